"""`capbot models init` then `capbot caption`, through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import skimage

from capbot.cli import main
from inference.modeldir import load_metadata

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def test_models_init_then_caption_json(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env
    assert main(["models", "init", "--preset", "tiny", "--out", str(tmp_path / "M")]) == 0
    version = load_metadata(tmp_path / "M").version
    assert version in capsys.readouterr().out

    photos = [SKIMAGE_DATA / "chelsea.png", SKIMAGE_DATA / "rocket.jpg"]
    assert main(["caption", *map(str, photos), "--model", str(tmp_path / "M"), "--json", "--device", "cpu", "--max-new-tokens", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == [str(p) for p in photos]
    assert all(r["model_version"] == version and isinstance(r["caption"], str) and r["timings_ms"]["total"] > 0 for r in records)
    assert all(0 <= r["confidence"] <= 1 and isinstance(r["alternatives"], list) for r in records)


def test_caption_reports_bad_images_and_still_captions_good_ones(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "cat.png"
    shutil.copy(SKIMAGE_DATA / "chelsea.png", good)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    args = ["caption", str(tmp_path / "notes.txt"), str(good), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.png"),
            "--model", str(tiny_model_dir), "--device", "cpu", "--beams", "2", "--max-new-tokens", "4"]
    assert main(args) == 2  # a file that cannot be captioned is a user error; the good one is still captioned
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{good}: ") and len(captured.out.splitlines()) == 1
    errors = captured.err.splitlines()
    assert f"error: {tmp_path / 'notes.txt'}: the file is not an image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF)" in errors
    assert f"error: {tmp_path / 'empty.jpg'}: the file is empty" in errors
    assert f"error: {tmp_path / 'missing.png'}: no such file" in errors


def test_user_errors_print_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["caption", str(SKIMAGE_DATA / "chelsea.png"), "--model", str(tmp_path / "nope"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "error: model directory not found" in err and "Traceback" not in err
    assert main(["models", "init", "--preset", "huge", "--out", str(tmp_path / "M")]) == 2
    assert "unknown model preset 'huge'" in capsys.readouterr().err
    (tmp_path / "M").mkdir()
    (tmp_path / "M" / "x").write_text("")
    assert main(["models", "init", "--out", str(tmp_path / "M")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_bad_or_unknown_options_are_usage_errors_not_tracebacks(capsys):
    assert main(["caption", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --bogus" in err and "Traceback" not in err
    assert main(["retrain", "--feedback-fraction", "2"]) == 2  # out of the option's range
    assert "Invalid value for '--feedback-fraction'" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_caption_without_a_readable_file_says_so_before_loading_any_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    # The model is a hub id this machine cannot reach: were it loaded first, its error would hide the files'.
    args = ["caption", str(tmp_path / "missing.png"), str(tmp_path / "folder"), "--model", "nobody/no-such-model"]
    assert main(args) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"error: {tmp_path / 'missing.png'}: no such file", f"error: {tmp_path / 'folder'}: is a directory"]


def test_json_errors_are_json_lines_in_order_and_exit_2(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "cat.png"
    shutil.copy(SKIMAGE_DATA / "chelsea.png", good)
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    (tmp_path / "folder").mkdir()
    args = ["caption", str(pdf), str(good), str(tmp_path / "folder"), str(tmp_path / "missing.jpg"), "--json",
            "--model", str(tiny_model_dir), "--device", "cpu", "--max-new-tokens", "4"]
    assert main(args) == 2
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["path"] for r in records] == [str(pdf), str(good), str(tmp_path / "folder"), str(tmp_path / "missing.jpg")]
    assert records[0]["error"]["code"] == "not_image" and "not an image" in records[0]["error"]["message"]
    assert records[1]["caption"] and 0 <= records[1]["confidence"] <= 1
    assert records[2]["error"] == {"code": "is_a_directory", "message": "is a directory"}
    assert records[3]["error"] == {"code": "no_such_file", "message": "no such file"}
    assert "error" not in captured.err  # the JSON lines say it all


def test_json_a_model_that_does_not_load_is_a_json_line_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "m" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"not really weights")
    assert main(["caption", str(SKIMAGE_DATA / "chelsea.png"), "--json", "--model", str(weights)]) == 2
    captured = capsys.readouterr()
    [record] = [json.loads(line) for line in captured.out.splitlines()]
    assert record["error"]["code"] == "not_a_directory"
    # --model naming a file inside a model directory says so, and which directory to give instead.
    assert f"error: {weights} is a file; give the model directory that holds it: {weights.parent}" in captured.err


@pytest.mark.parametrize("what", ["missing", "directory", "pdf"])
def test_a_single_unusable_file_exits_2(tmp_path, tiny_model_dir, capsys, monkeypatch, what):
    monkeypatch.chdir(tmp_path)
    path = {"missing": tmp_path / "missing.jpg", "directory": tmp_path, "pdf": tmp_path / "a.pdf"}[what]
    if what == "pdf":
        path.write_bytes(b"%PDF-1.4\n%%EOF\n")
    assert main(["caption", str(path), "--model", str(tiny_model_dir), "--device", "cpu"]) == 2
    assert f"error: {path}: " in capsys.readouterr().err
