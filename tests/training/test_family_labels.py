"""Training labels of every non-ViT+GPT-2 family, built the family's way: the caption and its end token are
learned; the prompt (start token, task question, chat turn) and the padding are masked with -100."""

from __future__ import annotations

import math

import pytest
import torch

from inference.families import BLIP, FLORENCE2, GIT, SMOLVLM
from inference.family_models import caption_prompt, load_model, load_processor
from training.data.coco import load_split
from training.family_collate import FamilyCollator
from training.family_labels import IGNORE_INDEX, text_ids

FAMILIES = (BLIP, GIT, FLORENCE2, SMOLVLM)
SHORT, LONG = "one red circle", "three small green squares and one big blue triangle on a black background"


@pytest.fixture(scope="module")
def built(family_model_dirs):
    """{family: (model, processor)} as training loads them."""
    return {family: (load_model(family_model_dirs[family], family), load_processor(family_model_dirs[family], family))
            for family in FAMILIES}


@pytest.fixture(scope="module")
def images(synthetic_dataset):
    return [item.path for item in load_split(synthetic_dataset.out_dir, "val").items[:2]]


def _batch(built, family, images, captions=(SHORT, LONG), max_length=32):
    model, processor = built[family]
    collator = FamilyCollator(family, processor, text_ids(family, model), max_length=max_length)
    return collator(list(zip(images, captions))), collator


# What the labels of one caption hold, beside the caption's own tokens: (first token, last token) by family.
SPECIALS = {
    BLIP: lambda ids: (None, ids.end),  # [DEC] is the (masked) start, [SEP] ends
    GIT: lambda ids: (None, ids.end),  # [CLS] is the (masked) start, [SEP] ends
    FLORENCE2: lambda ids: (ids.start, ids.end),  # <s> caption </s>: the decoder starts from </s>
    SMOLVLM: lambda ids: (None, ids.end),  # " caption<end_of_utterance>"
}


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_decode_to_exactly_the_caption_and_its_end_token(built, images, family):
    batch, collator = _batch(built, family, images)
    tokenizer, ids = collator.processor.tokenizer, collator.ids
    first, last = SPECIALS[family](ids)
    for row, caption in zip(batch["labels"], (SHORT, LONG)):
        kept = row[row != IGNORE_INDEX].tolist()
        assert kept[-1] == last and last not in kept[:-1]
        body = kept[:-1]
        if first is not None:
            assert body[0] == first
            body = body[1:]
        assert tokenizer.decode(body).strip() == caption  # nothing of the prompt, no other special token
        assert set(body).isdisjoint(tokenizer.all_special_ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_and_padding_are_masked(built, images, family):
    batch, collator = _batch(built, family, images)
    labels = batch["labels"]
    short, long = (labels[i].ne(IGNORE_INDEX).sum().item() for i in range(2))
    assert short < long
    if "attention_mask" in batch and family != FLORENCE2:  # the caption is in the model's input: labels line up
        attention = batch["attention_mask"]
        assert labels[attention.eq(0)].eq(IGNORE_INDEX).all()  # padding
        assert attention[0].sum() < attention[1].sum()
        learned = labels.ne(IGNORE_INDEX)
        assert torch.equal(batch["input_ids"][learned], labels[learned])  # the caption is what the model reads
    if family in (BLIP, GIT):
        assert (batch["input_ids"][:, 0] == collator.ids.start).all() and labels[:, 0].eq(IGNORE_INDEX).all()
    if family == FLORENCE2:  # the prompt is the encoder's input; the labels are the decoder's alone
        assert labels[0, short:].eq(IGNORE_INDEX).all()
        question = collator.processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
        assert question.strip() == "What does the image describe?"
    if family == SMOLVLM:  # the whole prompt serving generates from (the user turn, "Assistant:") is masked
        prompt = collator.inputs([images[0]])["input_ids"][0].tolist()
        assert caption_prompt(family, collator.processor).endswith("Assistant:")
        for row, label in zip(batch["input_ids"], labels):
            start = int(label.ne(IGNORE_INDEX).nonzero()[0])
            assert start == len(prompt) and row[:start].tolist() == prompt


@pytest.mark.parametrize("family", FAMILIES)
def test_a_long_caption_is_cut_but_keeps_its_end_token(built, images, family):
    batch, collator = _batch(built, family, images, max_length=4)
    for row in batch["labels"]:
        kept = row[row != IGNORE_INDEX].tolist()
        if family == FLORENCE2:
            kept = kept[1:]  # <s> is not the caption's
        assert len(kept) == 4 and kept[-1] == collator.ids.end


@pytest.mark.parametrize("family", FAMILIES)
def test_the_model_takes_the_batch(built, images, family):
    model, _ = built[family]
    batch, _ = _batch(built, family, images)
    with torch.no_grad():
        loss = model(**batch).loss.item()
    assert math.isfinite(loss) and loss > 0
