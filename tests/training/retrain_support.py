"""Helpers for the retraining tests: feedback recorded through the real storage functions, a copying
trainer stand-in, and a captioner that answers from a table (for orchestration tests only)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from inference.images import load_image
from inference.modeldir import METADATA_FILE, load_metadata, new_metadata
from inference.types import Caption
from storage import db
from storage.blobs import LocalBlobStore
from storage.captions import record_caption
from storage.clock import utcnow
from storage.corrections import record_correction
from storage.images import store_image
from training.retrain import FineTune, RetrainConfig


def open_store(url: str, root: Path):
    """Migrate an empty database and return (engine, blob store)."""
    db.upgrade(url)
    return db.create_engine_for(url), LocalBlobStore(root / "blobs")


def add_feedback(engine, blobs, examples: Sequence[tuple[Path, str, str]], *,
                 users: Sequence[str] = ("u1", "u2", "u3"), now: datetime | None = None,
                 platform: str = "slack", workspace: str | None = None) -> list[str]:
    """Store each (image file, model caption, correction) as a bot would, the i-th from `users[i % len(users)]`
    on `platform` (three users by default: as many as a rename needs); returns the image hashes."""
    now = now or utcnow() - timedelta(seconds=1)  # strictly before a run started right after
    hashes = []
    with db.session_scope(engine) as session:
        for i, (path, model_caption, corrected) in enumerate(examples):
            user = users[i % len(users)]
            data = Path(path).read_bytes()
            with Image.open(path) as img:
                size = img.size
            image = store_image(session, blobs, data, format="png", width=size[0], height=size[1], platform=platform)
            caption = record_caption(session, image_sha256=image.sha256, text=model_caption, model_version="v0",
                                     platform=platform, user_id=user, workspace_id=workspace,
                                     now=now - timedelta(seconds=1))
            record_correction(session, caption_id=caption.id, user_id=user, text=corrected,
                              now=now + timedelta(milliseconds=i))
            hashes.append(image.sha256)
    return hashes


def copying_trainer(calls: list | None = None) -> Callable[[FineTune], Path]:
    """A stand-in for fine-tuning: the candidate is a copy of the initial model under a new version id."""

    def train(job: FineTune) -> Path:
        if calls is not None:
            calls.append(job)
        meta = new_metadata(made_by="retrain", parent_version=job.parent_version)
        out = job.out_dir / meta.version
        shutil.copytree(job.init_model, out)
        (out / METADATA_FILE).write_text(meta.to_json(), encoding="utf-8")
        return out

    return train


class StopTraining(Exception):
    """Ends a run at the training step, once the test has seen what training was asked to do."""


def stopping_trainer(calls: list) -> Callable[[FineTune], Path]:
    """A stand-in for fine-tuning that records the job and stops the run there (raises `StopTraining`)."""

    def train(job: FineTune) -> Path:
        calls.append(job)
        raise StopTraining("stopped by the test")

    return train


@dataclass
class TableCaptioner:
    """Answers by image content: `table[sha256]` per model version, else `default`."""

    model_version: str
    table: dict[str, str] = field(default_factory=dict)
    default: str = "a thing"

    def caption(self, images, options=None):
        for data in images:
            load_image(data)  # the real intake: refuses what the engine would refuse, with an ImageError
        return [Caption(self.table.get(hashlib.sha256(b).hexdigest(), self.default), self.model_version) for b in images]


def config_for(engine, blobs, root: Path, base_model: Path, base_data: Path | None, **overrides) -> RetrainConfig:
    """A RetrainConfig writing under `root`, with small defaults for tests."""
    values = dict(engine=engine, blobs=blobs, models_dir=root / "models", runs_dir=root / "runs",
                  base_model=str(base_model), base_data=base_data, min_feedback=8, held_out_fraction=0.25,
                  min_held_out=4, eval_batch_size=16, with_meteor=False)
    values.update(overrides)
    return RetrainConfig(**values)


def version_of(location: str) -> str:
    return load_metadata(location).version
