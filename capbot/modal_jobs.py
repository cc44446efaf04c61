"""The library side of capbot's Modal functions: each Modal function body is one call into this module.

Everything here runs inside a Modal container (or under `.local()` in the tests). Settings come from
the container's environment: the plan shipped by the deploy (`capbot.modal_config`) and the Modal
Secret (CAPBOT_DATABASE_URL, bot tokens, other CAPBOT_* settings). Modal objects (Volumes, the Discord
state Dict, `spawn`) arrive as arguments, so tests pass local stand-ins. Heavy imports stay inside the
functions: the Modal app modules import this module where `modal deploy` runs.

Library calls this glue depends on (reconcile them when their owners change them):
`capbot.app.build_services`/`serving_model`, `capbot.captioning.captioner_spec`/`local_captioner`/`modal_captioner`,
`capbot.cli.retrain_cmds.retrain_config`, `training.retrain.retrain`/`default_trainer`,
`training.train.train(TrainArgs)`, `training.evaluate.evaluate_model`, `training.data.coco_download.download_coco`,
`training.data.redcaps.build_redcaps`, `storage.registry`, `bots.discord.run.run_discord_bot`,
`capbot.app.build_web_app`, `bots.slack.app.create_app`/`bots.slack.http.slack_router`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, MutableMapping

from capbot.modal_config import ModalPlan
from capbot.modal_storage import CommittingBlobStore, VolumeModelFiles, require_postgres

log = logging.getLogger(__name__)

DISCORD_RUN_S = 23 * 3600 + 1800  # the gateway hands over to its successor before Modal's 24 h limit
CHECKPOINT_COMMIT_S = 120.0  # how often a running training job commits its checkpoints and logs


# --- settings and storage ----------------------------------------------------------------------------------

def container_settings(*, database: bool = True) -> Any:
    """Settings inside a container, with logging configured and (for containers that use the database)
    PostgreSQL required: `ModalStorageError` otherwise."""
    from capbot.logs import configure_logging
    from capbot.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if database:
        require_postgres(settings.database_url, secret_name=ModalPlan.current().secret)
    return settings


def _migrated_engine(settings: Any) -> Any:
    from storage import db

    db.upgrade(settings.database_url)  # idempotent; containers starting together take turns (advisory lock)
    return db.create_engine_for(settings.database_url)


@contextmanager
def committing_every(volume: Any, seconds: float) -> Iterator[None]:
    """Commit `volume` every `seconds` while the block runs, and once at the end (even when it fails), so a
    preempted or crashed job leaves its latest checkpoint behind."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            _commit(volume, "periodic")

    thread = threading.Thread(target=loop, name="capbot-volume-commit", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
        _commit(volume, "final")


def _commit(volume: Any, why: str) -> None:
    try:
        volume.commit()
    except Exception as exc:  # the next commit (or the container's exit) takes the files along
        log.warning("volume commit failed: %s", exc, extra={"why": why})


def _reload(volume: Any, what: str) -> None:
    try:
        volume.reload()
    except Exception as exc:  # a fresh container already sees the latest commit
        log.warning("volume reload failed; using the state this container started with: %s", exc,
                    extra={"volume": what})


# --- captioning (inference/modal_app.py) -------------------------------------------------------------------

def start_caption_server(models_volume: Any) -> Any:
    """The GPU class's per-container state: the active version loaded, ready to follow the registry."""
    from dataclasses import replace
    from functools import partial

    from capbot.app import serving_model
    from capbot.captioning import captioner_spec, local_captioner
    from inference.modal_serving import CaptionServer

    settings, plan = container_settings(), ModalPlan.current()
    engine = _migrated_engine(settings)
    files = VolumeModelFiles(models_volume, settings.models_dir, stage_dir=settings.data_dir / "staged-models")
    spec = replace(captioner_spec(settings), batch_size=plan.batch_size)  # the GPU batch the deploy planned
    return CaptionServer(
        lambda location: local_captioner(spec, location),
        partial(serving_model, engine, settings),
        prepare=files.prepare,
        poll_s=plan.registry_poll_s, max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels,
    )


# --- the web endpoint and the Discord gateway (bots/modal_app.py) -------------------------------------------

def _services(settings: Any, blobs_volume: Any) -> Any:
    from capbot.app import build_services
    from capbot.captioning import captioner_spec, modal_captioner

    blobs = CommittingBlobStore(settings.blob_dir, blobs_volume)
    return build_services(settings, captioner=modal_captioner(settings, captioner_spec(settings)), blobs=blobs)


def web_app(blobs_volume: Any) -> Any:
    """The FastAPI app of the web endpoint: page, API and (with Slack credentials) /slack/events."""
    from capbot.app import build_web_app

    settings = container_settings()
    services = _services(settings, blobs_volume)
    slack = _slack_router(settings, services)
    return build_web_app(services, (slack,) if slack is not None else ())


def _slack_router(settings: Any, services: Any) -> Any:
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        log.info("slack: off on Modal (set CAPBOT_SLACK_BOT_TOKEN and CAPBOT_SLACK_SIGNING_SECRET in the Secret)")
        return None
    if settings.slack_app_token is not None:
        log.info("slack: CAPBOT_SLACK_APP_TOKEN is ignored on Modal; events arrive over HTTP at /slack/events")
    from bots.slack.app import create_app
    from bots.slack.http import slack_router

    slack = create_app(services.core, bot_token=settings.slack_bot_token.get_secret_value(),
                       signing_secret=settings.slack_signing_secret.get_secret_value(),
                       api_url=settings.slack_api_url, max_image_bytes=settings.max_image_bytes,
                       fetch_timeout_s=settings.fetch_timeout_s)
    log.info("slack: on, events at /slack/events")
    return slack_router(slack)


def run_discord_gateway(state: MutableMapping[str, Any], spawn_successor: Callable[[], Any],
                        blobs_volume: Any, *, run_for_s: float = DISCORD_RUN_S,
                        clock: Callable[[], float] = time.time) -> str:
    """Run the Discord bot for up to `run_for_s` seconds, then start its successor and disconnect.

    The successor is spawned while this one is still connected; with one container allowed it starts
    the moment this call returns, so the gap is one reconnect. `state` (a Modal Dict) records when the
    gateway stopped, so the next start logs how long Discord went unanswered, and the successor's call
    id, so the keeper does not start a second one.
    """
    settings = container_settings()
    if settings.discord_token is None:
        log.info("discord: off on Modal (CAPBOT_DISCORD_TOKEN is not in the Secret)")
        return "off"
    _log_gap(state, clock())
    services = _services(settings, blobs_volume)
    handed_over = threading.Event()

    def hand_over() -> None:
        state["call_id"] = _call_id(spawn_successor())
        handed_over.set()
        log.info("discord gateway handing over to its successor", extra={"call_id": state["call_id"]})

    try:
        asyncio.run(_discord_until(settings, services, run_for_s, hand_over))
    finally:
        state["stopped_at"] = clock()
        services.close()
    return "handed over" if handed_over.is_set() else "stopped"


async def _discord_until(settings: Any, services: Any, run_for_s: float, hand_over: Callable[[], None]) -> None:
    from bots.discord.run import run_discord_bot

    stop = asyncio.Event()

    async def deadline() -> None:
        await asyncio.sleep(run_for_s)
        await asyncio.to_thread(hand_over)  # Modal calls block: keep them off the gateway's event loop
        stop.set()

    timer = asyncio.create_task(deadline(), name="capbot-discord-deadline")
    try:
        await run_discord_bot(
            services.core, settings.discord_token.get_secret_value(), max_image_bytes=settings.max_image_bytes,
            api_url=settings.discord_api_url, gateway_url=settings.discord_gateway_url,
            message_content=settings.discord_message_content, stop=stop,
        )
    finally:
        timer.cancel()


def _log_gap(state: MutableMapping[str, Any], now: float) -> None:
    stopped_at = state.get("stopped_at")
    if stopped_at is None:
        log.info("discord gateway starting")
    else:
        log.info("discord gateway starting; Discord went unanswered for %.1f s", now - float(stopped_at),
                 extra={"gap_s": round(now - float(stopped_at), 1)})


def keep_discord_running(state: MutableMapping[str, Any], spawn: Callable[[], Any],
                         is_running: Callable[[str], bool]) -> str:
    """The scheduled keeper: start the gateway unless its last call is still queued or running."""
    from capbot.settings import get_settings

    if get_settings().discord_token is None:
        return "off: CAPBOT_DISCORD_TOKEN is not in the Modal Secret"
    call_id = state.get("call_id")
    if call_id and is_running(call_id):
        return "running"
    state["call_id"] = _call_id(spawn())
    log.warning("discord gateway was not running; started it", extra={"call_id": state["call_id"],
                                                                       "previous_call_id": call_id})
    return "started"


def call_is_running(call_id: str) -> bool:
    """Whether a spawned Modal call is still queued or running (a finished or failed one is not)."""
    import modal

    try:
        modal.FunctionCall.from_id(call_id).get(timeout=0)
    except TimeoutError:
        return True
    except modal.exception.TimeoutError:
        return True
    except Exception:  # it failed, expired or was cancelled: not running
        return False
    return False


def _call_id(call: Any) -> str:
    return str(getattr(call, "object_id", call))


# --- training (training/modal_app.py) ----------------------------------------------------------------------

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


def train_model(runs_volume: Any, models_volume: Any, *, data: str, name: str, model: str, steps: int,
                batch_size: int, lr: float) -> dict:
    """Fine-tune on a dataset of the datasets volume; checkpoints and TensorBoard logs go to the runs volume
    (committed every few minutes, so a preempted run resumes), the best model to the models volume as a
    registered candidate (`capbot models promote VERSION` makes it serve)."""
    from training.train import TrainArgs, train

    settings = container_settings()
    engine = _migrated_engine(settings)
    run_dir = settings.runs_dir / name
    args = TrainArgs(model=model or _active_or_base(engine, settings), out=run_dir / "model", run_dir=run_dir,
                     data=str(_dataset_path(settings, data)), steps=steps, batch_size=batch_size, lr=lr,
                     resume=True, progress=False, device="auto")
    with committing_every(runs_volume, CHECKPOINT_COMMIT_S):
        result = train(args)
    version = _publish(Path(result.model_dir), settings.models_dir, models_volume, engine, made_from=args.model)
    return {"version": version, "steps": result.steps, "metrics": result.metrics, "run_dir": str(args.run_dir)}


def evaluate(*, model: str, data: str, split: str, limit: int) -> dict:
    """COCO caption metrics of a model directory (default: the active version) on a dataset split."""
    from dataclasses import replace

    from capbot.captioning import captioner_spec, local_captioner
    from training.data.coco import load_split
    from training.evaluate import evaluate_model

    settings = container_settings()
    engine = _migrated_engine(settings)
    dataset = load_split(_dataset_path(settings, data), split)
    dataset = dataset.subset(limit) if limit else dataset
    spec = replace(captioner_spec(settings).scoring(), batch_size=64)  # as `capbot evaluate`, GPU-sized batches
    captioner = local_captioner(spec, model or _active_or_base(engine, settings))
    try:
        report = evaluate_model(captioner, dataset, batch_size=64)
    finally:
        captioner.close()
    return {"model_version": report.model_version, "split": split, "n_images": report.metrics.n_images,
            "metrics": report.metrics.scores()}


def scheduled_retrain(models_volume: Any, runs_volume: Any, blobs_volume: Any) -> dict:
    """The Modal Cron's run of `training.retrain.retrain`, with the candidate committed to the models
    volume right after training, before the registry can promote it (no container ever sees an
    active version whose files are missing)."""
    from capbot.cli.retrain_cmds import retrain_config
    from training.retrain import default_trainer, retrain

    settings = container_settings()
    _reload(blobs_volume, "blobs")  # images the bots stored since this container started
    engine = _migrated_engine(settings)
    try:
        with committing_every(runs_volume, CHECKPOINT_COMMIT_S):
            result = retrain(retrain_config(settings, engine),
                             trainer=committed_after(default_trainer, models_volume))
    finally:
        engine.dispose()
    log.info("scheduled retraining finished", extra={"status": result.status, "reason": result.message})
    return result.to_dict()


def committed_after(trainer: Callable[[Any], Path], volume: Any) -> Callable[[Any], Path]:
    """`trainer`, then a commit of the volume its model directory was written to (errors propagate: an
    uncommitted candidate must not be promoted)."""
    def train_then_commit(job: Any) -> Path:
        model_dir = trainer(job)
        volume.commit()
        log.info("candidate committed to the models volume", extra={"model_dir": str(model_dir)})
        return model_dir

    return train_then_commit


def tensorboard_app(runs_volume: Any) -> Any:
    """A WSGI TensorBoard over the runs volume (training logs), reloading it when idle so new runs appear."""
    from training.tb_wsgi import tensorboard_wsgi

    settings = container_settings(database=False)
    return tensorboard_wsgi(settings.runs_dir, refresh=runs_volume.reload)


# --- getting models in (`capbot modal upload-model` / `pull-model`) ----------------------------------------

def register_model(models_volume: Any, *, version_dir: str, activate: bool) -> dict:
    """Register a model directory already on the models volume (uploaded by `capbot modal upload-model`)."""
    from inference.modeldir import load_metadata

    settings = container_settings()
    _reload(models_volume, "models")
    location = settings.models_dir / version_dir
    meta = load_metadata(location)
    engine = _migrated_engine(settings)
    return _register(engine, meta.version, str(location), meta.parent_version, activate=activate)


def pull_hub_model(models_volume: Any, *, hub_id: str, activate: bool) -> dict:
    """Download a hub model into the models volume as a capbot model directory, commit it, register it."""
    from inference.model_import import import_model

    settings = container_settings()
    engine = _migrated_engine(settings)
    out = import_model(hub_id, settings.models_dir)
    models_volume.commit()  # committed before it is registered, let alone promoted
    return _register(engine, out.name, str(out), None, activate=activate)


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
