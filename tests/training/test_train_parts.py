"""The pieces of training: batches, learning-rate schedule, sample grid, data input, user errors."""

from __future__ import annotations

import io
import json
import logging
import math
import sys

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from storage.errors import UserError
from training.collate import IGNORE_INDEX, CaptionCollator, caption_labels
from training.schedule import lr_factor
from training.progress import step_bar
from training.tb import TILE, caption_grid
from training.train import TrainArgs, read_jsonl_pairs, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer_and_processor(tiny_model_dir):
    from transformers import AutoImageProcessor, AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir), AutoImageProcessor.from_pretrained(tiny_model_dir)


def test_labels_end_with_eos_and_only_padding_is_masked(tokenizer_and_processor):
    tok, _ = tokenizer_and_processor
    captions = ["a red circle", "two small blue squares at the top of the image"]
    labels = caption_labels(tok, captions, max_length=32)
    for row, caption in zip(labels.tolist(), captions):
        ids = tok(caption, add_special_tokens=False)["input_ids"]
        assert row[: len(ids) + 1] == ids + [tok.eos_token_id]
        assert all(v == IGNORE_INDEX for v in row[len(ids) + 1:])
    assert labels.shape[1] == len(tok(captions[1], add_special_tokens=False)["input_ids"]) + 1


def test_eos_is_kept_when_pad_and_eos_share_an_id(tokenizer_and_processor):
    tok, _ = tokenizer_and_processor
    # GPT-2's convention: pad = eos. Masking by id would hide the EOS the model must learn to emit.
    tok = tok.__class__.from_pretrained(tok.name_or_path, pad_token=tok.eos_token)
    assert tok.pad_token_id == tok.eos_token_id
    labels = caption_labels(tok, ["a circle", "a big green triangle near the top"], max_length=32)
    first = tok("a circle", add_special_tokens=False)["input_ids"]
    assert labels[0, len(first)].item() == tok.eos_token_id
    assert (labels[0, len(first) + 1:] == IGNORE_INDEX).all()


def test_long_captions_are_cut_but_still_end_with_eos(tokenizer_and_processor):
    tok, _ = tokenizer_and_processor
    labels = caption_labels(tok, ["a red circle " * 20], max_length=8)
    assert labels.shape == (1, 8)
    assert labels[0, -1].item() == tok.eos_token_id


def test_collator_batches_pixels_labels_and_mask(tokenizer_and_processor, synthetic_dataset):
    from training.data.coco import load_split, training_pairs

    tok, proc = tokenizer_and_processor
    pairs = training_pairs(load_split(synthetic_dataset.out_dir, "train"), epoch=0)[:3]
    collate = CaptionCollator(proc, tok, max_length=32)
    batch = collate(pairs)
    size = proc.size["height"]
    assert batch["pixel_values"].shape == (3, 3, size, size)
    assert (batch["decoder_attention_mask"] == batch["labels"].ne(IGNORE_INDEX)).all()
    again = collate(pairs)  # served from the pixel cache: identical values
    assert (again["pixel_values"] == batch["pixel_values"]).all()
    fresh = CaptionCollator(proc, tok, cache_size=0).pixels([Image.open(pairs[0][0])])
    assert (fresh[0] == batch["pixel_values"][0]).all()


def test_warmup_then_cosine_to_the_floor():
    factors = [lr_factor(s, warmup_steps=10, total_steps=110, min_ratio=0.1) for s in range(130)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:9], factors[1:10]))  # rising during warmup
    assert all(a >= b for a, b in zip(factors[10:110], factors[11:111]))  # then never rising
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert factors[110:] == [pytest.approx(0.1)] * 20
    assert lr_factor(0, warmup_steps=0, total_steps=10) == pytest.approx(1.0)


def test_caption_grid_tiles_images_with_text():
    images = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue", "yellow", "white")]
    grid = caption_grid(images, ["a red circle"] * 5, ["a large red circle on the left"] * 5, columns=4)
    assert grid.width == 4 * TILE and grid.height > 2 * TILE
    assert grid.getpixel((10, 10)) == (255, 0, 0)  # the first tile is the first image
    text_area = grid.crop((0, TILE, TILE, TILE + 40))
    assert np.asarray(text_area).min() < 100  # dark caption text was drawn under it


def test_caption_grid_text_is_large_enough_to_read():
    grid = caption_grid([Image.new("RGB", (64, 64), "red")], ["a red circle"], ["a large red circle"], columns=1)
    under = np.asarray(grid.convert("L"))[TILE:]
    inked = np.flatnonzero(under.min(axis=1) < 128)  # rows under the image with text in them
    first_line = np.split(inked, np.flatnonzero(np.diff(inked) > 1) + 1)[0]
    # "model: a red circle" from its ascenders to its baseline; Pillow's default bitmap font gave 8 pixels.
    assert len(first_line) >= 12, len(first_line)


def test_jsonl_pairs_resolve_relative_paths(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [{"image": "a.png", "caption": "a black square"}, {"image_path": str(tmp_path / "a.png"), "caption": "dark"}]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_jsonl_pairs(tmp_path / "rows.jsonl") == [(tmp_path / "a.png", "a black square"), (tmp_path / "a.png", "dark")]


@pytest.mark.parametrize("content, reason", [("", "empty_data"), ('{"image": "nope.png", "caption": "x"}', "missing_images"),
                                             ("not json", "bad_data")])
def test_bad_jsonl_is_a_user_error(tmp_path, content, reason):
    (tmp_path / "rows.jsonl").write_text(content)
    with pytest.raises(UserError) as info:
        read_jsonl_pairs(tmp_path / "rows.jsonl")
    assert info.value.reason == reason


def test_missing_data_or_model_is_a_clear_user_error(tmp_path, tiny_model_dir, synthetic_dataset):
    where = dict(out=tmp_path / "model", run_dir=tmp_path / "run")
    with pytest.raises(UserError, match="does not exist"):
        train(TrainArgs(model=str(tiny_model_dir), data=str(tmp_path / "no-such-data"), **where))
    with pytest.raises(UserError, match="not found"):
        train(TrainArgs(model=str(tmp_path / "no-such-model"), data=str(synthetic_dataset.out_dir), **where))
    with pytest.raises(UserError, match="no training data"):
        TrainArgs(model=str(tiny_model_dir), **where)
    with pytest.raises(UserError, match="invalid training arguments: steps, lr"):
        TrainArgs(model=str(tiny_model_dir), data="d", steps=0, lr=-1, **where)
    with pytest.raises(UserError, match="invalid training arguments: precision, eval_limit"):
        TrainArgs(model=str(tiny_model_dir), data="d", precision="fp16", eval_limit=-1, **where)
    assert not (tmp_path / "model").exists() and not (tmp_path / "run").exists()
    assert math.isfinite(lr_factor(5, warmup_steps=0, total_steps=5))


def test_progress_bar_shows_steps_loss_throughput_and_time_left_on_a_terminal():
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    with step_bar(0, 10, console=console) as bar:
        bar.advance(4)
        bar.show(1.23456, 321.04)
    drawn = console.file.getvalue()
    assert bar.shown and "4/10" in drawn and "loss 1.2346" in drawn and "321.0 samples/s" in drawn and "ETA" in drawn
    plain = Console(file=io.StringIO())
    with step_bar(0, 10, console=plain) as bar:
        bar.advance(4)
        bar.show(1.0, 2.0)
    assert not bar.shown and plain.file.getvalue() == ""


class _CurrentStderr(logging.Handler):
    """Like capbot's log handler: writes to whatever sys.stderr is when a record comes."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{record.levelname.lower()} {record.name}: {record.getMessage()}\n")


def test_transformers_warnings_print_above_the_bar_not_inside_it():
    from transformers.utils import logging as hf_logging

    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    handler = _CurrentStderr()
    logging.getLogger().addHandler(handler)
    warn = hf_logging.get_logger("transformers.modeling_utils")
    propagated = logging.getLogger("transformers").propagate  # transformers' default: True only when CI is set
    try:
        with step_bar(0, 10, console=console) as bar:
            bar.advance(4)
            warn.warning("We strongly recommend passing in an `attention_mask` since your input_ids may be padded.")
            bar.advance(1)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = console.file.getvalue().splitlines()
    said = [line for line in lines if "We strongly recommend" in line]
    # Printed by the bar's console as a line of its own (above the bar), not written into the bar's line.
    assert said and all("training" not in line and "steps" not in line for line in said), lines
    assert said[0].endswith("warning transformers.modeling_utils: We strongly recommend passing in an "
                            "`attention_mask` since your input_ids may be padded.")
    # Afterwards transformers logs as it did before.
    assert logging.getLogger("transformers").propagate is propagated
    assert hf_logging._default_handler in logging.getLogger("transformers").handlers


def test_overlapping_bars_leave_transformers_logging_as_it_was():
    """Two trainings (a retrain thread and a CLI run, say) whose bars open and close interleaved."""
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers")  # transformers sets its own handler up
    library = logging.getLogger("transformers")
    before = library.propagate
    first = step_bar(0, 10, console=Console(file=io.StringIO(), force_terminal=True))
    second = step_bar(0, 10, console=Console(file=io.StringIO(), force_terminal=True))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert library.propagate is True  # the second bar is still drawn
    second.__exit__(None, None, None)
    assert library.propagate is before
    assert hf_logging._default_handler in library.handlers


class _Stderr(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "not-a-terminal"])
def test_training_shows_a_bar_on_a_terminal_and_log_lines_elsewhere(terminal, tiny_model_dir, synthetic_dataset, tmp_path,
                                                                    monkeypatch, caplog):
    stderr = _Stderr(terminal)
    monkeypatch.setattr(sys, "stderr", stderr)
    caplog.set_level(logging.DEBUG, logger="training.train_run")
    train(TrainArgs(model=str(tiny_model_dir), data=str(synthetic_dataset.out_dir), out=tmp_path / "model",
                    run_dir=tmp_path / "run", steps=3, batch_size=4, warmup_steps=1, log_every=1, val_split=None,
                    tensorboard=False))
    lines = [r for r in caplog.records if r.getMessage() == "train step"]
    assert [r.step for r in lines] == [1, 2, 3] and {r.of for r in lines} == {3}
    assert all(r.loss > 0 and r.samples_per_s > 0 for r in lines) and lines[-1].eta_s == 0
    # On a terminal the bar carries the numbers and the lines drop to DEBUG; elsewhere they are the record.
    assert {r.levelno for r in lines} == {logging.DEBUG if terminal else logging.INFO}
    drawn = stderr.getvalue()
    assert ("3/3" in drawn and "samples/s" in drawn and "loss" in drawn) if terminal else "samples/s" not in drawn


def test_cpu_threads_hold_for_the_run_only(tiny_model_dir, synthetic_dataset, tmp_path, caplog):
    import torch

    caplog.set_level(logging.INFO, logger="training.train")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for threads, name in ((1, "one"), (0, "default")):
            train(TrainArgs(model=str(tiny_model_dir), data=str(synthetic_dataset.out_dir), out=tmp_path / name,
                            run_dir=tmp_path / f"{name}-run", steps=1, batch_size=4, val_split=None, tensorboard=False,
                            cpu_threads=threads))
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert [r.threads for r in caplog.records if r.getMessage() == "training"] == [1, 2]
