"""The README's "Try it offline" block works when pasted, in order, into an empty directory.

Each line runs as the user would run it: the venv's `capbot` on PATH, no CAPBOT_* settings, a new working
directory. Sizes shrink by appending options (the last occurrence of an option wins), so the commands
themselves are the README's. The last line, `capbot run`, is started, asked for its page and a caption,
and stopped with SIGTERM, as Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.capbot.capbot_server import wait_for_url

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Try it offline"
CAPBOT = Path(sys.executable).parent / "capbot"  # the venv's entry point, as `. .venv/bin/activate` provides

# Appended to a command (keyed by its leading words) to make the block take about a minute.
SHRINK = {
    ("data", "synthetic"): ["--train", "48", "--val", "8", "--test", "8"],
    ("train",): ["--steps", "4", "--batch-size", "8", "--warmup-steps", "1"],
    ("evaluate",): ["--no-meteor"],
}


@dataclass(frozen=True)
class Line:
    """One line of the block: `NAME=value ... capbot ARGS`."""

    text: str
    env: dict[str, str]
    args: list[str]  # after `capbot`

    def shrunk(self) -> list[str]:
        extra = next((flags for words, flags in SHRINK.items() if tuple(self.args[: len(words)]) == words), [])
        return [*self.args, *extra]


def offline_block(readme: str) -> list[Line]:
    """The lines of the first fenced block after the "Try it offline" heading, parsed."""
    start = readme.index(HEADING)
    block = re.search(r"^```[^\n]*\n(.*?)^```", readme[start:], re.MULTILINE | re.DOTALL)
    assert block, f"no code block after {HEADING!r}"
    lines = []
    for text in block.group(1).splitlines():
        words = shlex.split(text, comments=True)
        if not words:
            continue
        env = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        assert words[:1] == ["capbot"], f"README line is not a capbot command a user can paste as is: {text!r}"
        lines.append(Line(text, env, words[1:]))
    return lines


def _user_env(extra: dict[str, str]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    environ["PATH"] = f"{CAPBOT.parent}{os.pathsep}{environ.get('PATH', '')}"
    return {**environ, **extra}


def _run(line: Line, cwd: Path) -> str:
    done = subprocess.run([str(CAPBOT), *line.shrunk()], cwd=cwd, env=_user_env(line.env), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"README line failed: {line.text}\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def _serve(line: Line, cwd: Path, image: Path) -> dict:
    """Start the server line on a free port, fetch the page, caption `image`, stop it; return the caption."""
    process = subprocess.Popen([str(CAPBOT), *line.shrunk()], cwd=cwd, env=_user_env({**line.env, "CAPBOT_PORT": "0"}),
                               stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        url = wait_for_url(process, lines)
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        reply = httpx.post(url + "api/captions", files={"file": (image.name, image.read_bytes(), "image/png")}, timeout=60)
        assert reply.status_code == 200, reply.text
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, "".join(lines) + rest
    return reply.json()


def test_the_block_is_capbot_commands_ending_with_the_server():
    lines = offline_block(README.read_text(encoding="utf-8"))
    assert [line.args[:1] for line in lines][-1] == ["run"]
    assert any(line.args[:1] == ["train"] for line in lines) and any(line.args[:1] == ["evaluate"] for line in lines)


def test_pasting_the_block_into_an_empty_directory_works(tmp_path):
    *commands, server = offline_block(README.read_text(encoding="utf-8"))
    outputs = [_run(line, tmp_path) for line in commands]
    # What the README says the lines leave behind: the model directory, its run, its registration.
    trained = next(line for line in commands if line.args[:1] == ["train"])
    model_dir = tmp_path / trained.args[trained.args.index("--out") + 1]
    version = json.loads((model_dir / "capbot.json").read_text())["version"]
    assert (tmp_path / "capbot-data" / "runs" / model_dir.name / "checkpoints" / "LATEST").is_file()
    assert (tmp_path / "capbot-data" / "capbot.db").is_file()
    evaluation = outputs[commands.index(next(line for line in commands if line.args[:1] == ["evaluate"]))]
    assert "CIDEr" in evaluation or "cider" in evaluation
    assert "colour accuracy" in evaluation and "shape accuracy" in evaluation
    image = next(tmp_path / arg for line in commands if line.args[:1] == ["caption"] for arg in line.args[1:]
                 if arg.endswith(".png"))
    caption = _serve(server, tmp_path, image)
    assert caption["model_version"] == version and "text" in caption  # 4 steps of training may say nothing yet


def _parsed(lines: list[Line], *words: str) -> dict:
    """The option values (defaults included) click gives the block's `capbot WORDS ...` command."""
    import typer.main

    import capbot.cli  # noqa: F401  (registers every command)
    from capbot.cli.root import app

    line = next(line for line in lines if tuple(line.args[: len(words)]) == words)
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    return command.make_context(" ".join(words), line.args[len(words):]).params


def test_the_block_trains_with_the_learning_tests_recipe():
    # tests/training/test_train_learning.py checks what the README promises (colour and shape named on
    # >= 90% of the test images) by training with TRAINED_TINY_RECIPE: it must be the README's recipe.
    from tests.trained_fixture import TRAINED_TINY_RECIPE as recipe

    lines = offline_block(README.read_text(encoding="utf-8"))
    data, init, train = (_parsed(lines, "data", "synthetic"), _parsed(lines, "models", "init"), _parsed(lines, "train"))
    assert {"n_train": data["train"], "n_val": data["val"], "n_test": data["test"], "seed": data["seed"],
            "image_size": data["image_size"], "shapes": tuple(data["shapes"].split(","))} == recipe["data"]
    assert {"preset": init["preset"], "seed": init["seed"]} == recipe["init"]
    assert init["captions"] == data["out"] / "annotations" / "captions_train.json" and init["encoder"] is None
    assert {key: train[key] for key in recipe["train"]} == recipe["train"]
    assert train["model"] == str(init["out"]) and train["data"] == str(data["out"])


@pytest.mark.parametrize("text, problem", [
    ("make install\ncapbot run\n", "not a capbot command"),
    (". .venv/bin/activate\ncapbot run\n", "not a capbot command"),
])
def test_lines_a_new_user_cannot_paste_are_refused(text, problem):
    with pytest.raises(AssertionError, match=problem):
        offline_block(f"{HEADING} now\n\n```\n{text}```\n")
