"""`capbot models init` then `capbot caption`, through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


def test_caption_reports_bad_images_and_still_captions_good_ones(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "cat.png"
    shutil.copy(SKIMAGE_DATA / "chelsea.png", good)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    args = ["caption", str(tmp_path / "notes.txt"), str(good), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.png"),
            "--model", str(tiny_model_dir), "--device", "cpu", "--beams", "2", "--max-new-tokens", "4"]
    assert main(args) == 1
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
    assert main(args) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"error: {tmp_path / 'missing.png'}: no such file", f"error: {tmp_path / 'folder'}: is a directory"]
