"""The packages' layering (docs/DEVELOPING.md): dependencies point inward, nothing below `capbot/` imports
`capbot`, the Modal glue lives in one package, and Slack, Discord and retraining are assembled in one
composition root (`capbot/app.py`) that `capbot run` and the Modal jobs share. Read from the source's imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("inference", "storage", "bots", "training")


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def test_nothing_below_capbot_imports_capbot():
    upward = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n == "capbot" or n.startswith("capbot."))
              for p in _sources(*LOWER)}
    assert {path: names for path, names in upward.items() if names} == {}


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}


def test_the_modal_glue_is_one_package():
    """Modules that define Modal objects (they import `modal` when imported) live in capbot/modal/; library
    code below it (the `ModalCaptioner` client, the wire format, the GPU side's `CaptionServer`) takes no
    `modal` import at module level."""
    glue = ROOT / "capbot" / "modal"
    strays = [str(p.relative_to(ROOT)) for p in _sources("capbot", *LOWER)
              if glue not in p.parents and ("modal" in _top_level_imports(p) or p.stem.startswith("modal_app"))]
    assert strays == []
    assert not list((ROOT / "capbot").glob("modal_*.py"))
    assert (glue / "app.py").is_file()


def test_slack_discord_and_retraining_are_assembled_only_in_the_composition_root():
    assemblers = {"bots.slack.app.create_app", "bots.discord.run.run_discord_bot", "training.retrain.RetrainConfig"}
    found = {str(p.relative_to(ROOT)): sorted(_imports(p) & assemblers) for p in _sources("capbot")}
    assert {path: names for path, names in found.items() if names} == {"capbot/app.py": sorted(assemblers)}
