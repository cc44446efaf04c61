"""Training targets of every non-ViT+GPT-2 family, built the family's way (issue 24).

A family's forward pass takes the caption in its own form, and its loss must learn only the caption and the
token that ends it, never the prompt or the padding (-100 is the loss's ignore index):

| family     | text the model reads (`input_ids`)              | labels                                          |
|------------|-------------------------------------------------|-------------------------------------------------|
| BLIP       | start ([DEC]), caption, end ([SEP])             | the same, start and padding masked              |
| GIT        | start ([CLS]), caption, end ([SEP])             | the same, start and padding masked              |
| Florence-2 | encoder: the task prompt's question + image     | decoder: <s>, caption, </s>; padding masked     |
| SmolVLM    | chat template: user turn (image + question),    | the answer (" " + caption + <end_of_utterance>);|
|            | then the assistant's answer                     | everything before it and padding masked         |

BLIP's and GIT's forward passes shift the labels themselves (position i predicts label i+1), so labels are the
input ids with masks; the start token is masked too (nothing predicts it). Florence-2's forward makes the
decoder's input by shifting the labels right behind its start token (</s>), so its labels begin with <s>, the
first token the pretrained model writes. SmolVLM's answer is what its chat template puts after the prompt
serving generates from ("...Assistant:"), cut after the end-of-turn token, so the model learns to answer in
the turn serving opens, and to close it.

The start, end and padding ids come from the model's configs (`text_ids`), the ids `generate` starts from and
stops at, not from the tokenizer's names for them (BLIP's tokenizer has no eos; GIT's has no bos).
Rows are right-padded: training runs the whole sequence at once, and the attention mask hides the padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from inference.families import BLIP, FLORENCE2, GIT, SMOLVLM
from inference.family_models import SMOLVLM_DEFAULT_QUESTION, caption_prompt

IGNORE_INDEX = -100  # the cross-entropy ignore_index used by transformers' loss


@dataclass(frozen=True)
class TextIds:
    """The token ids that start a caption, end it and pad a row, as the model generates them."""

    start: int | None  # BLIP's and GIT's first input token; Florence-2's first label (<s>); unused for SmolVLM
    end: int
    pad: int


def text_ids(family: str, model: Any) -> TextIds:
    """The start, end and padding ids of `model` (a loaded model of `family`), from its configs."""
    config = model.config
    if family == BLIP:  # BLIP's generate starts from the text config's bos and stops at its [SEP]
        text = config.text_config
        return TextIds(text.bos_token_id, text.sep_token_id, text.pad_token_id)
    generation, text = model.generation_config, config.get_text_config()
    start = _first(generation.bos_token_id, text.bos_token_id)
    end = _first(generation.eos_token_id, text.eos_token_id)
    pad = _first(generation.pad_token_id, text.pad_token_id, end)
    if end is None:
        raise ValueError(f"the {family} model's configs name no end-of-sequence token; captions could never end")
    return TextIds(start, end, pad)  # type: ignore[arg-type]


def _first(*values: Any) -> int | None:
    """The first id given (a list of end ids counts as its first), or None."""
    for value in values:
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return None


def caption_targets(family: str, processor: Any, captions: Sequence[str], ids: TextIds, *, max_length: int,
                    prompt_inputs: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The text tensors of a training batch: the model inputs that carry the caption and `labels`.

    `max_length` bounds a caption's tokens, its end token included (the start and the prompt not counted).
    `prompt_inputs` is what `inference.family_models.model_inputs` returned for the batch's images (needed by
    SmolVLM, whose prompt ids the answer follows); keys returned here replace those of the same name.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    if family in (BLIP, GIT):
        rows = [[ids.start, *caption, ids.end] for caption in _caption_tokens(tokenizer, captions, max_length)]
        input_ids, attention = _right_pad(rows, ids.pad)
        labels = _masked(input_ids, attention, prompt_lengths=[1] * len(rows))
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if family == FLORENCE2:
        start = [] if ids.start is None else [ids.start]
        rows = [[*start, *caption, ids.end] for caption in _caption_tokens(tokenizer, captions, max_length)]
        input_ids, attention = _right_pad(rows, ids.pad)
        return {"labels": _masked(input_ids, attention, prompt_lengths=[0] * len(rows))}
    if family == SMOLVLM:
        if prompt_inputs is None:
            raise ValueError("SmolVLM's labels follow its prompt: pass the batch's prompt_inputs")
        prompts = _unpadded(prompt_inputs["input_ids"], prompt_inputs["attention_mask"])
        answers = _chat_answers(processor, captions, ids.end, max_length)
        input_ids, attention = _right_pad([p + a for p, a in zip(prompts, answers)], ids.pad)
        labels = _masked(input_ids, attention, prompt_lengths=[len(p) for p in prompts])
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    raise ValueError(f"no training labels for the {family!r} family")


def _caption_tokens(tokenizer: Any, captions: Sequence[str], max_length: int) -> list[list[int]]:
    """Each caption's tokens without special tokens, cut to leave room for the end token."""
    encoded = tokenizer(list(captions), add_special_tokens=False)["input_ids"]
    return [list(row[: max(max_length - 1, 0)]) for row in encoded]


def _chat_answers(processor: Any, captions: Sequence[str], end: int, max_length: int) -> list[list[int]]:
    """The assistant turn after the generation prompt serving uses (`caption_prompt`), for each caption: the chat
    template renders the conversation with the answer, and the answer is what follows that prompt, cut after its
    end token."""
    prompt = caption_prompt(SMOLVLM, processor)
    question = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": SMOLVLM_DEFAULT_QUESTION}]}
    rows = []
    for caption in captions:
        answer = {"role": "assistant", "content": [{"type": "text", "text": caption}]}
        full = processor.apply_chat_template([question, answer])
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the answered conversation without the generation prompt "
                             "serving captions from; the answer cannot be cut from it")
        tokens = processor.tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        text = tokens[: tokens.index(end)] if end in tokens else tokens
        rows.append([*text[: max(max_length - 1, 0)], end])
    return rows


def _unpadded(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """The real tokens of each row, whichever side the processor padded."""
    return [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]


def _right_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        attention[i, : len(row)] = 1
    return ids, attention


def _masked(input_ids: torch.Tensor, attention: torch.Tensor, *, prompt_lengths: Sequence[int]) -> torch.Tensor:
    """`input_ids` with padding and each row's first `prompt_lengths[i]` tokens set to IGNORE_INDEX."""
    labels = input_ids.masked_fill(attention.eq(0), IGNORE_INDEX)
    for i, n in enumerate(prompt_lengths):
        labels[i, :n] = IGNORE_INDEX
    return labels
