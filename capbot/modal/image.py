"""The Modal objects every capbot container shares: the plan, the container image, Volumes and Secret.

Imported by `capbot.modal.app` where `capbot modal deploy` runs and again inside every container.
Nothing here talks to Modal: `from_name` objects are lazy and the image is only built by a deploy, so
this imports without credentials.

The image installs capbot from this checkout's own files, pinned, with no test tools:
`requirements-gpu.lock` (PyPI's CUDA build of torch with its nvidia and triton wheels), then
`requirements-runtime.lock` (what capbot's runtime dependencies pull in), then the capbot package
itself without dependencies. Both locks are generated (`make lock`, `make lock-gpu`; docs/modal.md).
Java comes from `default-jre-headless`, which every Debian release has (bookworm's is OpenJDK 17,
trixie's OpenJDK 21), so the image builds on every Modal image builder version.
"""

from __future__ import annotations

from pathlib import Path

import modal

from capbot.modal.plan import DATA_ROOT, REQUIRED_SECRET_KEYS, VOLUME_ROLES, ModalPlan, mount_path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("capbot", "inference", "storage", "bots", "training")  # pyproject's [tool.setuptools.packages.find]
PROJECT_FILES = ("pyproject.toml", "README.md")  # what building the capbot package reads besides PACKAGES
GPU_LOCK = "requirements-gpu.lock"  # torch (CUDA build) and its nvidia/triton wheels, pinned
RUNTIME_LOCK = "requirements-runtime.lock"  # capbot's runtime dependencies, pinned; no test tools
JAVA = "default-jre-headless"  # pycocoevalcap's PTB tokenizer and METEOR run on Java
PYTHON = "3.11"
SOURCE_DIR = "/opt/capbot"
_NOT_SOURCE = ["**/__pycache__", "**/*.pyc"]

plan = ModalPlan.current()


def build_image(deploy_plan: ModalPlan, root: Path = PROJECT_ROOT) -> modal.Image:
    """Debian slim + Java + the GPU lock + the runtime lock + capbot from `root`."""
    image = (
        modal.Image.debian_slim(python_version=PYTHON)
        .apt_install(JAVA)
        .pip_install_from_requirements(str(root / GPU_LOCK))
        .pip_install_from_requirements(str(root / RUNTIME_LOCK))
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


__all__ = ["DATA_ROOT", "image", "mounts", "plan", "secret", "volumes"]
