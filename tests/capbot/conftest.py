from __future__ import annotations

from pathlib import Path

import pytest

from capbot.app import build_services
from capbot.settings import get_settings


@pytest.fixture
def photo_bytes() -> bytes:
    """A real photo shipped with scikit-image."""
    import skimage

    return (Path(skimage.__file__).parent / "data" / "chelsea.png").read_bytes()


@pytest.fixture
def services(tmp_path, tiny_model_dir, monkeypatch):
    """The real composition root over a tmp SQLite database and the tiny model."""
    monkeypatch.chdir(tmp_path)
    settings = get_settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu", port=0)
    built = build_services(settings)
    yield built
    built.close()
