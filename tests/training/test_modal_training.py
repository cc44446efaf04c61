"""Training on Modal through `.local()`: the scheduled retraining trigger on synthetic data (its candidate
committed to the models Volume before the registry can promote it), a fine-tuning job that publishes a
registered candidate, and TensorBoard answering over HTTP."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from storage import db, registry, runs
from training.data.coco import load_split
from tests.modal_support import deployment_env
from tests.training.retrain_support import add_feedback

pytestmark = [pytest.mark.filterwarnings("error::modal.exception.DeprecationError"),
              pytest.mark.filterwarnings("ignore:.*is executing locally and will not have access:UserWarning")]
on_postgres = pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                      indirect=True)


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models train faster on one thread on the shared machine (see tests/conftest.py)."""


@on_postgres
def test_scheduled_retraining_commits_the_candidate_before_the_registry_promotes_it(
        monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset, database_url):
    from capbot.modal.app import scheduled_retrain

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url,
                                CAPBOT_RETRAIN_BASE_DATA=str(synthetic_dataset.out_dir),
                                CAPBOT_RETRAIN_MIN_FEEDBACK="8", CAPBOT_RETRAIN_CIDER_TOLERANCE="100")
    db.upgrade(database_url)
    engine = db.create_engine_for(database_url)
    from storage.blobs import LocalBlobStore

    test = load_split(synthetic_dataset.out_dir, "test")
    add_feedback(engine, LocalBlobStore(deployment.data_dir / "blobs"),
                 [(item.path, "a thing", item.captions[0]) for item in test.items])
    seen_at_commit: list[tuple[list[str], object]] = []

    def models_commit() -> None:  # what another container could see once this commit lands
        with db.session_scope(engine) as session:
            seen_at_commit.append(([p.name for p in deployment.models_dir.iterdir()], registry.get_active(session)))

    deployment.volumes["models"].on_commit = models_commit
    try:
        result = scheduled_retrain.local()
        with db.session_scope(engine) as session:
            active, finished = registry.get_active(session), runs.list_runs(session)
    finally:
        engine.dispose()
    candidate = result["candidate_version"]
    assert result["status"] in ("promoted", "not_promoted"), result
    assert [run.status for run in finished] == [result["status"]]
    assert (deployment.models_dir / candidate / "capbot.json").is_file()
    assert len(seen_at_commit) == 1
    files, active_then = seen_at_commit[0]
    assert candidate in files and active_then is None  # on the volume before anything could promote it
    if result["status"] == "promoted":
        assert active.id == candidate
    assert deployment.volumes["blobs"].reloads == 1  # images stored by the bots since the container started
    assert deployment.volumes["runs"].commits >= 1  # checkpoints and logs


@on_postgres
def test_training_job_resumes_in_its_run_directory_and_publishes_a_registered_candidate(
        monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset, database_url):
    from capbot.modal.app import train

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    shutil.copytree(synthetic_dataset.out_dir, deployment.data_dir / "datasets" / "shapes")
    first = train.local(data="shapes", name="shapes-run", steps=3, batch_size=4, lr=1e-3)
    run_dir = deployment.data_dir / "runs" / "shapes-run"
    assert (run_dir / "checkpoints").is_dir() and list((run_dir / "tb").iterdir())
    assert (deployment.models_dir / first["version"] / "capbot.json").is_file()
    engine = db.create_engine_for(database_url)
    try:
        with db.session_scope(engine) as session:
            version = registry.get_version(session, first["version"])
    finally:
        engine.dispose()
    assert version.status == "candidate" and version.location == str(deployment.models_dir / first["version"])
    assert deployment.volumes["models"].commits == 1 and deployment.volumes["runs"].commits >= 1
    again = train.local(data="shapes", name="shapes-run", steps=3, batch_size=4, lr=1e-3)
    assert again["steps"] == 3  # resumed from the finished run's checkpoint: nothing left to do


def test_tensorboard_answers_over_http(monkeypatch, tmp_path, tiny_model_dir):
    from capbot.modal.app import tensorboard
    from training.tb import TensorBoard

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, "")
    board = TensorBoard(deployment.data_dir / "runs" / "shapes-run" / "tb")
    board.scalars(1, {"train/loss": 2.5})
    board.scalars(2, {"train/loss": 1.5})
    board.close()
    server = make_server("127.0.0.1", 0, tensorboard.local(), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        page = urllib.request.urlopen(base + "/", timeout=30)
        assert page.status == 200 and "text/html" in page.headers["content-type"]
        deadline = time.monotonic() + 60
        while True:  # TensorBoard loads event files in the background
            listed = json.loads(urllib.request.urlopen(base + "/data/runs", timeout=30).read())
            if listed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert listed == ["shapes-run/tb"]
        scalars = json.loads(urllib.request.urlopen(
            base + "/data/plugin/scalars/scalars?run=shapes-run%2Ftb&tag=train%2Floss", timeout=30).read())
        assert [(step, value) for _, step, value in scalars] == [(1, 2.5), (2, 1.5)]
    finally:
        server.shutdown()
    assert deployment.volumes["runs"].reloads >= 1  # it looks for runs committed after it started


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        """No access log in the test output."""


@on_postgres
def test_coco_download_lands_on_the_datasets_volume(monkeypatch, tmp_path, tiny_model_dir, database_url):
    from tests.fakes.http_files import FileServer, Route
    from tests.training.test_coco_download import ANN_PATH, VAL_PATH, _jpeg, _zip  # the official archive layout
    from capbot.modal.app import download_coco

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    captions = {"images": [{"id": 1, "file_name": "000000000001.jpg"}],
                "annotations": [{"id": 10, "image_id": 1, "caption": "a blue picture"}]}
    with FileServer() as mirror:
        mirror.add(VAL_PATH, Route(_zip({"val2017/000000000001.jpg": _jpeg((0, 0, 255))}),
                                   content_type="application/zip"))
        mirror.add(ANN_PATH, Route(_zip({"annotations/captions_val2017.json": json.dumps(captions).encode()}),
                                   content_type="application/zip"))
        result = download_coco.local(parts="val2017,annotations", mirror=mirror.base_url)
    assert [part["name"] for part in result["parts"]] == ["val2017", "annotations"]
    loaded = load_split(deployment.data_dir / "datasets" / "coco", "val")
    assert [item.captions for item in loaded.items] == [("a blue picture",)]
    assert deployment.volumes["datasets"].commits >= 1


@on_postgres
def test_first_model_in_upload_then_register_or_pull(monkeypatch, tmp_path, tiny_model_dir, database_url):
    from inference.modeldir import load_metadata
    from capbot.modal.app import pull_model, register_model

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    uploaded = load_metadata(tiny_model_dir).version
    shutil.copytree(tiny_model_dir, deployment.models_dir / uploaded)  # what `capbot modal upload-model` put there
    registered = register_model.local(version_dir=uploaded, activate=True)
    assert registered == {"version": uploaded, "location": str(deployment.models_dir / uploaded), "active": uploaded}
    pulled = pull_model.local(hub_id=str(tiny_model_dir), activate=False)  # a hub id in real use
    assert pulled["active"] == uploaded and pulled["version"] != uploaded
    assert load_metadata(pulled["location"]).made_by == "import"
    assert deployment.volumes["models"].commits == 1  # the pulled model, committed before it was registered


# --- issue 21: a preempted scheduled retraining resumes ---------------------------------------------------

@on_postgres
def test_a_preempted_scheduled_retraining_resumes_from_its_last_checkpoint(
        monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset, database_url, capsys):
    from modal.exception import InputCancellation

    from capbot.modal import jobs
    from storage.blobs import LocalBlobStore
    from capbot.modal.app import scheduled_retrain
    from training.train_run import Run

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url,
                                CAPBOT_RETRAIN_BASE_DATA=str(synthetic_dataset.out_dir),
                                CAPBOT_RETRAIN_MIN_FEEDBACK="8", CAPBOT_RETRAIN_CIDER_TOLERANCE="100")
    monkeypatch.setattr(jobs, "RETRAIN_CHECKPOINT_STEPS", 1)
    db.upgrade(database_url)
    engine = db.create_engine_for(database_url)
    test = load_split(synthetic_dataset.out_dir, "test")
    add_feedback(engine, LocalBlobStore(deployment.data_dir / "blobs"),
                 [(item.path, "a thing", item.captions[0]) for item in test.items])
    saved = Run.checkpoint

    def preempted_after_one(self, position, *args):  # Modal interrupts the container after the first save
        saved(self, position, *args)
        raise InputCancellation("preempted")

    monkeypatch.setattr(Run, "checkpoint", preempted_after_one)
    with pytest.raises(InputCancellation):
        scheduled_retrain.local()
    monkeypatch.setattr(Run, "checkpoint", saved)
    runs_after_commit = deployment.volumes["runs"].commits
    assert runs_after_commit >= 1  # the checkpoint went out with the final commit
    capsys.readouterr()
    result = scheduled_retrain.local()  # Modal restarts the same input
    log = capsys.readouterr().err  # the container's log
    try:
        with db.session_scope(engine) as session:
            first, second = sorted(runs.list_runs(session), key=lambda run: run.id)
    finally:
        engine.dispose()
    assert (first.status, first.reason) == ("failed", "stopped: InputCancellation")
    assert result["resumed_run"] == first.id and result["run_id"] == second.id
    assert second.status == result["status"] and second.started_at == first.started_at  # same feedback window
    resumed = re.findall(r"training\.train: resumed .*?step=(\d+)", log)
    assert resumed == ["1"], log[-3000:]  # from the checkpoint, not from scratch
