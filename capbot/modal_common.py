"""The Modal objects every capbot Modal module shares: the plan, the container image, Volumes and Secret.

Imported by `inference/modal_app.py`, `bots/modal_app.py` and `training/modal_app.py`, where `capbot
modal deploy` runs and again inside every container. Nothing here talks to Modal: `from_name` objects
are lazy and the image is only built by a deploy, so this imports without credentials.

The image installs capbot the way `make install` does, from this checkout's own files: torch pinned
exactly (PyPI's Linux wheel of torch is the CUDA build), then `requirements.lock`, then the capbot
package itself without dependencies. Nothing is installed from a loose requirement.
"""

from __future__ import annotations

from pathlib import Path

import modal

from capbot.modal_config import DATA_ROOT, REQUIRED_SECRET_KEYS, VOLUME_ROLES, ModalPlan, mount_path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("capbot", "inference", "storage", "bots", "training")  # pyproject's [tool.setuptools.packages.find]
PROJECT_FILES = ("pyproject.toml", "README.md")  # what building the capbot package reads besides PACKAGES
TORCH = "torch==2.13.0"  # pyproject's exact pin (a test keeps them equal); from PyPI this is the CUDA build
PYTHON = "3.11"
SOURCE_DIR = "/opt/capbot"
_NOT_SOURCE = ["**/__pycache__", "**/*.pyc"]

plan = ModalPlan.current()


def build_image(deploy_plan: ModalPlan, root: Path = PROJECT_ROOT) -> modal.Image:
    """Debian slim + Java (COCO metrics) + CUDA torch + the lock file + capbot from `root`."""
    image = (
        modal.Image.debian_slim(python_version=PYTHON)
        .apt_install("openjdk-17-jre-headless")  # pycocoevalcap's PTB tokenizer and METEOR run on Java
        .pip_install(TORCH)
        .pip_install_from_requirements(str(root / "requirements.lock"))
    )
    for package in PACKAGES:
        image = image.add_local_dir(root / package, f"{SOURCE_DIR}/{package}", copy=True, ignore=_NOT_SOURCE)
    for name in PROJECT_FILES:
        image = image.add_local_file(root / name, f"{SOURCE_DIR}/{name}", copy=True)
    return (
        image.run_commands(f"python -m pip install --no-deps {SOURCE_DIR}")
        .workdir("/root")  # not the source tree: `import capbot` must find the installed package
        .env(deploy_plan.container_env())
    )


image = build_image(plan)
volumes: dict[str, modal.Volume] = {
    role: modal.Volume.from_name(plan.volume_name(role), create_if_missing=True) for role in VOLUME_ROLES
}
secret = modal.Secret.from_name(plan.secret, required_keys=list(REQUIRED_SECRET_KEYS))


def mounts(*roles: str) -> dict[str, modal.Volume]:
    """`volumes=` for a function that uses these Volumes, each at its place under DATA_ROOT."""
    return {mount_path(role): volumes[role] for role in roles}


def new_app() -> modal.App:
    """One of the three partial apps; `capbot.modal_app` includes them all into the deployable app.

    include_source=False: containers import capbot from the installed package, not from a copy of
    the source file Modal would otherwise mount beside it.
    """
    return modal.App(plan.app_name, include_source=False)


__all__ = ["DATA_ROOT", "image", "mounts", "new_app", "plan", "secret", "volumes"]
