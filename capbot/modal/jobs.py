"""The batch jobs' bodies: datasets, training, evaluation, scheduled retraining, TensorBoard, first models.

Each Modal function of capbot/modal/app.py is one call into this module, and each job here is a few lines
around library code (`training.*`, `storage.registry`, `inference.model_import`) or the composition root
(`capbot.app.retrain_config`). Modal objects (Volumes) arrive as arguments, so tests pass local stand-ins;
heavy imports stay inside the functions, because the app module imports this one where `modal deploy` runs.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from capbot.modal.container import container_engine, container_settings
from capbot.modal.volumes import committed_after, committing_every, reload_quietly

log = logging.getLogger(__name__)

CHECKPOINT_COMMIT_S = 120.0  # how often a running job commits its checkpoints and logs to the Volume
RETRAIN_CHECKPOINT_STEPS = 200  # training steps between the scheduled retraining's checkpoints

Migrate = Callable[[], Any] | None  # the app's migration job (default: looked up by name)


# --- datasets ------------------------------------------------------------------------------------------------

def download_coco(datasets_volume: Any, *, parts: str, keep_archives: bool, mirror: str = "") -> dict:
    """Download COCO 2017 parts into the datasets volume (resumes what an earlier, stopped run left);
    a `mirror` is tried before the official host."""
    from training.data.coco_download import OFFICIAL_BASE_URL
    from training.data.coco_download import download_coco as download

    settings = container_settings()
    bases = (mirror, OFFICIAL_BASE_URL) if mirror else (OFFICIAL_BASE_URL,)
    with committing_every(datasets_volume, CHECKPOINT_COMMIT_S):
        result = download(settings.data_dir / "datasets" / "coco", parts=_names(parts), base_urls=bases,
                          keep_archives=keep_archives, show_progress=False)
    return {"root": str(result.root), "parts": [asdict(part) for part in result.parts]}


def build_redcaps(datasets_volume: Any, *, annotations: str, hub: str, subset: str, seed: int) -> dict:
    """Split RedCaps annotations and download a subset of images into the datasets volume."""
    from training.data.image_fetch import FetchOptions
    from training.data.redcaps import build_redcaps as build, load_annotation_files, load_hub_records

    settings = container_settings()
    records = load_hub_records(hub) if hub else load_annotation_files([Path(p) for p in _names(annotations)])
    counts = None if subset.strip().lower() == "all" else [int(n) for n in _names(subset)]
    with committing_every(datasets_volume, CHECKPOINT_COMMIT_S):
        built = build(records, settings.data_dir / "datasets" / "redcaps", counts=counts, seed=seed,
                      options=FetchOptions(max_bytes=settings.max_image_bytes), show_progress=False)
    return {"out_dir": str(built.out_dir), "counts": built.counts, "failures": built.failures}


# --- training, evaluation, retraining ----------------------------------------------------------------------

def train_model(runs_volume: Any, models_volume: Any, *, data: str, name: str, model: str, steps: int,
                batch_size: int, lr: float, migrate: Migrate = None) -> dict:
    """Fine-tune on a dataset of the datasets volume; checkpoints and TensorBoard logs go to the runs volume
    (committed every few minutes, so a preempted run resumes), the best model to the models volume as a
    registered candidate (`capbot models promote VERSION` makes it serve)."""
    from training.train import TrainArgs, train

    settings = container_settings()
    engine = container_engine(settings, migrate)
    try:
        run_dir = settings.runs_dir / name
        args = TrainArgs(model=model or _active_or_base(engine, settings), out=run_dir / "model", run_dir=run_dir,
                         data=str(_dataset_path(settings, data)), steps=steps, batch_size=batch_size, lr=lr,
                         resume=True, progress=False, device="auto")
        with committing_every(runs_volume, CHECKPOINT_COMMIT_S):
            result = train(args)
        version = _publish(Path(result.model_dir), settings.models_dir, models_volume, engine, made_from=args.model)
    finally:
        engine.dispose()
    return {"version": version, "steps": result.steps, "metrics": result.metrics, "run_dir": str(args.run_dir)}


def evaluate(*, model: str, data: str, split: str, limit: int, migrate: Migrate = None) -> dict:
    """COCO caption metrics of a model directory (default: the active version) on a dataset split."""
    from capbot.captioning import captioner_spec, local_captioner
    from training.data.coco import load_split
    from training.evaluate import evaluate_model

    settings = container_settings()
    engine = container_engine(settings, migrate)
    try:
        location = model or _active_or_base(engine, settings)
    finally:
        engine.dispose()
    dataset = load_split(_dataset_path(settings, data), split)
    dataset = dataset.subset(limit) if limit else dataset
    spec = replace(captioner_spec(settings).scoring(), batch_size=64)  # as `capbot evaluate`, GPU-sized batches
    captioner = local_captioner(spec, location)
    try:
        report = evaluate_model(captioner, dataset, batch_size=64)
    finally:
        captioner.close()
    return {"model_version": report.model_version, "split": split, "n_images": report.metrics.n_images,
            "metrics": report.metrics.scores()}


def scheduled_retrain(models_volume: Any, runs_volume: Any, blobs_volume: Any, *, migrate: Migrate = None) -> dict:
    """The Modal Cron's run of `training.retrain.retrain`, configured by the composition root.

    The candidate is committed to the models volume right after training, before the registry can promote
    it (no container ever sees an active version whose files are missing). Checkpoints are saved every
    `RETRAIN_CHECKPOINT_STEPS` steps and committed every few minutes; when Modal preempts the container it
    restarts the same input, and that run resumes the interrupted one from its last committed checkpoint.
    """
    from capbot.app import RetrainOptions, retrain_config
    from training.retrain import default_trainer, retrain

    settings = container_settings()
    reload_quietly(blobs_volume, "blobs")  # images the bots stored since this container started
    engine = container_engine(settings, migrate)
    options = RetrainOptions(resume=True, checkpoint_every=RETRAIN_CHECKPOINT_STEPS)
    try:
        with committing_every(runs_volume, CHECKPOINT_COMMIT_S):
            result = retrain(retrain_config(settings, engine, options),
                             trainer=committed_after(default_trainer, models_volume))
    finally:
        engine.dispose()
    log.info("scheduled retraining finished", extra={"status": result.status, "reason": result.message,
                                                     "resumed_run": result.resumed_run})
    return result.to_dict()


def tensorboard_app(runs_volume: Any) -> Any:
    """A WSGI TensorBoard over the runs volume (training logs), reloading it when idle so new runs appear."""
    from training.tb_wsgi import tensorboard_wsgi

    settings = container_settings(database=False)
    return tensorboard_wsgi(settings.runs_dir, refresh=runs_volume.reload)


# --- getting models in (`capbot modal upload-model` / `pull-model`) ----------------------------------------

def register_model(models_volume: Any, *, version_dir: str, activate: bool, migrate: Migrate = None) -> dict:
    """Register a model directory already on the models volume (uploaded by `capbot modal upload-model`)."""
    from inference.modeldir import load_metadata

    settings = container_settings()
    reload_quietly(models_volume, "models")
    location = settings.models_dir / version_dir
    meta = load_metadata(location)
    engine = container_engine(settings, migrate)
    try:
        return _register(engine, meta.version, str(location), meta.parent_version, activate=activate)
    finally:
        engine.dispose()


def pull_hub_model(models_volume: Any, *, hub_id: str, activate: bool, migrate: Migrate = None) -> dict:
    """Download a hub model into the models volume as a capbot model directory, commit it, register it."""
    from inference.model_import import import_model

    settings = container_settings()
    engine = container_engine(settings, migrate)
    try:
        out = import_model(hub_id, settings.models_dir)
        models_volume.commit()  # committed before it is registered, let alone promoted
        return _register(engine, out.name, str(out), None, activate=activate)
    finally:
        engine.dispose()


def _register(engine: Any, version: str, location: str, parent: str | None, *, activate: bool) -> dict:
    from storage import registry
    from storage.db import session_scope

    with session_scope(engine) as session:
        if registry.get_version(session, version) is None:
            registry.register_version(session, version_id=version, location=location, parent_id=parent)
        if activate:
            registry.promote(session, version)
        active = registry.get_active(session)
    log.info("model registered", extra={"version": version, "location": location, "activated": activate})
    return {"version": version, "location": location, "active": active.id if active else None}


def _publish(model_dir: Path, models_dir: Path, models_volume: Any, engine: Any, *, made_from: str) -> str:
    from inference.modeldir import load_metadata

    meta = load_metadata(model_dir)
    target = models_dir / meta.version
    if not target.exists():
        shutil.copytree(model_dir, target)  # another volume: a copy, not a rename
    models_volume.commit()  # visible to every container before anything can promote it
    _register(engine, meta.version, str(target), meta.parent_version, activate=False)
    log.info("trained model published", extra={"version": meta.version, "from": made_from})
    return meta.version


def _active_or_base(engine: Any, settings: Any) -> str:
    from capbot.app import serving_model

    return serving_model(engine, settings)


def _dataset_path(settings: Any, data: str) -> Path:
    path = Path(data)
    return path if path.is_absolute() else settings.data_dir / "datasets" / data


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


# --- privacy ---------------------------------------------------------------------------------------------------

def sweep_images(blobs_volume: Any, *, migrate: Migrate = None) -> dict:
    """The Modal Cron's retention sweep (`capbot.app.sweep_images`, as `capbot run`'s schedule runs it): remove
    the image files past their retention from the blobs volume, then commit it."""
    from capbot.app import sweep_images as sweep
    from storage.blobs import LocalBlobStore

    settings = container_settings()
    reload_quietly(blobs_volume, "blobs")  # images the bots stored since this container started
    engine = container_engine(settings, migrate)
    try:
        result = sweep(settings, engine, LocalBlobStore(settings.blob_dir))
    finally:
        engine.dispose()
    if result.removed:
        blobs_volume.commit()
    return {"removed": result.removed, "kept_for_review": result.kept_for_review,
            "kept_for_training": result.kept_for_training}
