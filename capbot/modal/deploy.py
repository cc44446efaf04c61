"""What `capbot modal ...` does on the user's machine: deploy the app (and migrate once), upload or pull a model.

Every Modal failure becomes one `ModalServiceError` line (no credentials, app not deployed, Modal
unreachable, a remote crash); problems found before Modal is asked (not a capbot checkout, not a
model directory) are `UserError`s too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from capbot.modal.plan import ModalPlan
from storage.errors import UserError

log = logging.getLogger(__name__)

CHECKOUT_FILES = ("pyproject.toml", "README.md", "requirements-gpu.lock", "requirements-runtime.lock")  # the image's


def check_checkout(root: Path) -> Path:
    """`root` if it holds what the image is built from (a capbot checkout); `UserError` otherwise."""
    missing = [name for name in CHECKOUT_FILES if not (root / name).is_file()]
    if missing:
        raise UserError(
            f"capbot modal deploy builds the container image from a capbot checkout, but {root} has no "
            f"{', '.join(missing)}; run it from a clone of the repository (pip install -e .)",
            reason="not_a_checkout")
    return root


def deploy(plan: ModalPlan | None = None) -> dict[str, str | None]:
    """Deploy capbot.modal.app (everything) under the plan's app name, then run its migration job once;
    returns the web endpoints' URLs and the database revision."""
    import modal

    from capbot.modal.image import PROJECT_ROOT
    from inference.modal_captioner import ModalErrors

    plan = plan or ModalPlan.current()
    check_checkout(PROJECT_ROOT)
    _check_cron(plan.retrain_cron)
    _check_cron(plan.sweep_cron)
    from capbot.modal import app as modal_app

    missing = (f"Modal could not find something the app needs; create the Secret {plan.secret!r} first "
               "(docs/modal.md, step 3)")
    with ModalErrors(plan.app_name, "the deploy", not_found=missing):
        with modal.enable_output():
            modal_app.app.deploy(name=plan.app_name)
    with ModalErrors(plan.app_name, "migrate_database"):
        migrated = modal_app.migrate_database.remote()  # containers only check the schema
        log.info("database migrated", extra={"revision": migrated.get("revision")})
        return {"web": modal_app.Web().web.get_web_url(), "tensorboard": modal_app.tensorboard.get_web_url(),
                "revision": migrated.get("revision")}


def _check_cron(cron: str) -> None:
    if cron:
        from training.scheduler import parse_cron

        parse_cron(cron)  # InvalidCron (a UserError) names the bad field


def upload_model(model_dir: Path, *, activate: bool, plan: ModalPlan | None = None) -> dict:
    """Copy a local model directory into the models Volume as <version>/, then register it (and activate it)."""
    import modal

    from inference.modal_captioner import ModalErrors
    from inference.modeldir import load_metadata

    plan = plan or ModalPlan.current()
    meta = load_metadata(model_dir)  # refuses a directory that is not a capbot model, before any upload
    volume = modal.Volume.from_name(plan.volume_name("models"), create_if_missing=True)
    with ModalErrors(plan.app_name, "register_model"):
        with volume.batch_upload(force=True) as batch:
            batch.put_directory(str(model_dir), f"/{meta.version}")
        log.info("model uploaded", extra={"version": meta.version, "volume": plan.volume_name("models")})
        register = modal.Function.from_name(plan.app_name, "register_model")
        return register.remote(version_dir=meta.version, activate=activate)


def pull_model(hub_id: str, *, activate: bool, plan: ModalPlan | None = None) -> dict:
    """Have the deployed app download a hub model into the models Volume and register it."""
    import modal

    from inference.modal_captioner import ModalErrors

    plan = plan or ModalPlan.current()
    with ModalErrors(plan.app_name, "pull_model"):
        pull = modal.Function.from_name(plan.app_name, "pull_model")
        return pull.remote(hub_id=hub_id, activate=activate)
