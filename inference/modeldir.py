"""Self-describing model directories: weights, configs, image processor, tokenizer and `capbot.json` (another
family than ViT+GPT-2: its processor, which holds the image processor, tokenizer and chat template).

Everything that builds or trains a model (`capbot models init`, training, retraining) saves through
`save_model_dir`, and everything that loads one reads the same layout, so a directory alone is enough to
caption, fine-tune further, or trace where a version came from (`load_metadata`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

METADATA_FILE = "capbot.json"
METADATA_FORMAT = 1  # bump when a field changes meaning; loaders accept older formats


class ModelDirError(UserError):
    """A model directory is missing, incomplete or has an unreadable `capbot.json`."""


@dataclass
class ModelMetadata:
    """What `capbot.json` holds: the version's identity and how it was made."""

    version: str  # unique id, e.g. "20261126-181500-3fa2c1"; also the registry key
    parent_version: str | None = None  # the version this one was fine-tuned from; None for a new model
    created_at: str = ""  # ISO 8601 UTC; filled by `new_metadata`
    made_by: str = "init"  # "init" (capbot models init), "train", "retrain", ...
    preset: str | None = None  # architecture preset name when built from one
    base: str | None = None  # hub id or directory the weights started from (fine-tuning), if any
    source: dict[str, str] = field(default_factory=dict)  # e.g. {"encoder": .., "decoder": .., "tokenizer": ..}
    extra: dict[str, Any] = field(default_factory=dict)  # free-form: training data, metrics, parameters
    format: int = METADATA_FORMAT

    def to_json(self) -> str:
        """Serialise as the text of `capbot.json`."""
        return json.dumps(asdict(self), indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelMetadata":
        """Build from parsed JSON, ignoring keys written by newer capbot versions."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def new_version_id(now: datetime | None = None) -> str:
    """A sortable, unique version id: UTC timestamp plus random hex (two saves in one second differ)."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def new_metadata(*, made_by: str, parent_version: str | None = None, now: datetime | None = None, **kwargs: Any) -> ModelMetadata:
    """Metadata for a version being created now; `kwargs` are further `ModelMetadata` fields."""
    now = now or datetime.now(timezone.utc)
    return ModelMetadata(
        version=new_version_id(now),
        parent_version=parent_version,
        created_at=now.isoformat(timespec="seconds"),
        made_by=made_by,
        **kwargs,
    )


def set_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> None:
    """Put the decoder's special token ids where training and `generate` look for them.

    The one place for the GPT-2 quirk of the ViT+GPT-2 recipe. GPT-2's tokenizer has no pad token and
    uses `<|endoftext|>` as bos, eos and unk, so: padding reuses eos (labels mask pads with -100, so the
    model never learns to predict them), and decoding starts from bos. Without these the composite model
    defaults to token 50256, out of range for a small vocabulary, and a forward pass with labels raises.
    Called by `init_model`, by the engine after loading, and by training before fitting.
    """
    if tokenizer.eos_token is None:
        raise ModelDirError("the tokenizer has no end-of-sequence token; a caption decoder needs one", reason="invalid")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    bos, eos, pad = special_token_ids(tokenizer)

    # The composite config drives shift_tokens_right in training; token ids are not generation
    # parameters, so save_pretrained accepts them on the config.
    model.config.decoder_start_token_id = bos
    model.config.pad_token_id = pad
    model.config.eos_token_id = eos
    model.decoder.config.bos_token_id = bos
    model.decoder.config.eos_token_id = eos
    model.decoder.config.pad_token_id = pad
    # generate() reads the generation config, not model.config.
    gen = model.generation_config
    gen.decoder_start_token_id = bos
    gen.bos_token_id = bos
    gen.eos_token_id = eos
    gen.pad_token_id = pad


def special_token_ids(tokenizer: Any) -> tuple[int, int, int]:
    """(decoder start, end, padding) token ids by `set_token_ids`' rule: start from bos (eos when the
    tokenizer has none), pad with pad (eos when none). Works on any object with the `*_token_id` attributes."""
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return bos, eos, pad


def make_image_processor(image_size: int) -> Any:
    """The image processor new models use: resize to a square, scale to [-1, 1] (ViT's convention)."""
    try:  # transformers 5: the PIL backend, used without torchvision (the default class would warn and fall back)
        from transformers import ViTImageProcessorPil as _ViTProcessor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import ViTImageProcessor as _ViTProcessor

    return _ViTProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def save_model_dir(
    model: Any,
    processor: Any,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | Path,
    metadata: ModelMetadata,
    *,
    overwrite: bool = False,
) -> Path:
    """Write model, processor, tokenizer and `capbot.json` into one directory; return its path.

    `processor` is a ViT+GPT-2 model's image processor beside its `tokenizer`, or another family's own
    processor (`inference.family_models.load_processor`), which saves its tokenizer and chat template
    itself: its `tokenizer` is None.

    The directory appears complete or not at all: files go to a temporary sibling that is renamed into
    place, so a crash mid-save never leaves a half-written version for serving to pick up. An existing
    non-empty `out_dir` is an error unless `overwrite`.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ModelDirError(f"cannot write a model to {out}: it is a file", reason="exists")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ModelDirError(f"{out} already exists and is not empty; choose another directory", reason="exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
        _make_readable(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved model directory", extra={"path": str(out), "version": metadata.version})
    return out


def _make_readable(directory: Path) -> None:
    # mkdtemp creates 0700 and some writers use 0600; a model directory is shared with serving processes.
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(3)}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def version_of(model_dir: str | Path, source: str | Path | None = None) -> str:
    """The version id a model directory serves as: capbot.json's, else the `source` it was loaded from (a hub
    id, whose snapshot directory has none) or the directory itself."""
    if has_metadata(model_dir):
        return load_metadata(model_dir).version
    return str(model_dir if source is None else source)


def has_metadata(model_dir: str | Path) -> bool:
    """True when `model_dir` is a directory with a `capbot.json`."""
    return (Path(model_dir).expanduser() / METADATA_FILE).is_file()


def load_metadata(model_dir: str | Path) -> ModelMetadata:
    """Read `capbot.json` from a model directory; `ModelDirError` when missing or unreadable."""
    path = Path(model_dir).expanduser() / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{path.parent} has no {METADATA_FILE}; is it a capbot model directory?", reason="not_found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"cannot read {path}: {exc}", reason="invalid") from exc
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise ModelDirError(f"{path} has no version id", reason="invalid")
    return ModelMetadata.from_dict(data)
