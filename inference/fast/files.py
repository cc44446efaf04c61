"""What the fast path reads from a model directory without transformers' tokenizer classes.

Loading a tokenizer through transformers imports torch, and torch alone is a third of a fast server's
resident memory. The fast path needs only two things from the tokenizer: the special token ids and
`batch_decode(ids, skip_special_tokens=True)`. `TextDecoder` gives both from `tokenizer.json` with the
`tokenizers` library, which is what transformers' fast tokenizers call underneath (the texts are compared
with transformers' in tests/inference/test_fast.py). A directory it cannot read that way (no
tokenizer.json, or a WordPiece-style clean-up) falls back to transformers' tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from inference.modeldir import special_token_ids

_CONFIG = "tokenizer_config.json"
_SPECIALS = "special_tokens_map.json"


class TextDecoder:
    """Token ids to text the way transformers' fast tokenizer decodes them, with its special token ids."""

    def __init__(self, tokenizer: Any, specials: dict[str, str | None]) -> None:
        self._tokenizer = tokenizer
        self.eos_token = specials.get("eos_token")
        ids = {name: tokenizer.token_to_id(token) if token else None for name, token in specials.items()}
        self.bos_token_id, self.eos_token_id, self.pad_token_id = ids.get("bos_token"), ids.get("eos_token"), ids.get("pad_token")

    def batch_decode(self, rows: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        """Decode each row of token ids."""
        return self._tokenizer.decode_batch([list(r) for r in rows], skip_special_tokens=skip_special_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Decode one row of token ids."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)


def load_text_decoder(model_dir: Path) -> Any:
    """A `TextDecoder` for `model_dir`, or transformers' tokenizer when the directory needs it."""
    config = _read_json(model_dir / _CONFIG)
    specials = {**_read_json(model_dir / _SPECIALS), **config}
    if (model_dir / "tokenizer.json").is_file() and not _needs_wordpiece_cleanup(model_dir, config):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        names = ("bos_token", "eos_token", "pad_token")
        decoder = TextDecoder(tokenizer, {name: _token_text(specials.get(name)) for name in names})
        if decoder.eos_token_id is not None:
            return decoder
    from transformers import AutoTokenizer

    from inference.hub import load_pretrained

    return load_pretrained(AutoTokenizer.from_pretrained, model_dir, "tokenizer")


def generation_settings(model_dir: Path, tokenizer: Any) -> SimpleNamespace:
    """What `inference.generation.search_spec` reads of a generation config: the special tokens by
    `set_token_ids`' rule (as the exact engine sets them after loading) and the model's beam settings."""
    generation = _read_json(model_dir / "generation_config.json")
    start, eos, pad = special_token_ids(tokenizer)
    return SimpleNamespace(decoder_start_token_id=start, eos_token_id=eos, pad_token_id=pad,
                           length_penalty=generation.get("length_penalty"), early_stopping=generation.get("early_stopping"))


def _needs_wordpiece_cleanup(model_dir: Path, config: dict) -> bool:
    # transformers skips clean_up_tokenization_spaces for BPE models (it would strip real spaces) and
    # applies it to the others; only the BPE case is reproduced here.
    if not config.get("clean_up_tokenization_spaces"):
        return False
    model = _read_json(model_dir / "tokenizer.json").get("model", {})
    return model.get("type") != "BPE"


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<|endoftext|>", "lstrip": false, ...}
        return value.get("content")
    return value


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
