"""Where the fast path's converted model lives, and when it must be rebuilt.

The model directory format does not change: the fast path's ONNX graphs are built from it and cached
beside it, in `<model dir>/.capbot-fast/<key>/`, where the key hashes the weights and configs (and the
recipe that converts them). New weights give a new key, so a stale conversion is never used; it is
removed once the new one is in place. A read-only model directory (a shared volume, a hub snapshot
owned by someone else) falls back to `<fallback>/<key>/`.

The conversion runs in a child process (`python -m inference.fast.build`): it loads the fp32 model,
which the serving process then never holds (the memory a server keeps is the converted model's). A
process that has imported torch already (tests, training, a GPU server) converts in-process: it saves
the child's ~10 s of imports and has nothing left to save in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock

from storage.errors import UserError
from inference.fast.cpuint8 import int8_products_saturate
from inference.fast.layout import META_FILE

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".capbot-fast"
# Bump when the graphs or the quantisation recipe change: old conversions then count as stale.
RECIPE = "onnx-int8-v4"
_HASHED_SUFFIXES = (".safetensors", ".bin")
_HASHED_NAMES = ("config.json", "generation_config.json")


class FastBuildError(UserError):
    """The fast path's conversion of a model directory failed."""


def conversion_recipe(quantize: bool = True, *, reduce_range: bool | None = None) -> str:
    """The conversion recipe keyed into a conversion: fp32, or int8 with 8-bit or 7-bit (`reduce_range`)
    weights; `reduce_range` defaults to what this CPU needs (`inference.fast.cpuint8`). A folder shared by
    machines of both kinds then holds one conversion of each, and neither counts as the other's."""
    if not quantize:
        return RECIPE + "-fp32"
    if reduce_range is None:
        reduce_range = int8_products_saturate()
    return RECIPE + ("-w7" if reduce_range else "-w8")


def weights_digest(model_dir: Path) -> str:
    """A hash of the weights and configs in `model_dir` (what makes two conversions of it the same model)."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir()
                   if p.is_file() and (p.suffix in _HASHED_SUFFIXES or p.name in _HASHED_NAMES))
    if not any(p.suffix in _HASHED_SUFFIXES for p in files):
        raise FastBuildError(f"{model_dir} has no weights (*.safetensors) to convert", reason="invalid")
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def weights_key(model_dir: Path, recipe: str | None = None, *, digest: str | None = None) -> str:
    """A short hash of the weights, configs and conversion recipe (this CPU's int8 one by default): equal
    keys mean an equal conversion."""
    recipe = conversion_recipe() if recipe is None else recipe
    digest = digest or weights_digest(model_dir)
    return hashlib.sha256(f"{recipe}\n{digest}".encode()).hexdigest()[:20]


def cache_roots(model_dir: Path, fallback: Path | None, *, beside: bool = True) -> list[Path]:
    """Candidate cache folders, preferred first: beside the model (unless `beside` is False, e.g. for a
    hub snapshot, which belongs to the hub's cache), then the fallback location."""
    roots = [model_dir / CACHE_DIRNAME] if beside else []
    roots.append((fallback or default_fallback()).expanduser() / model_dir.name)
    return roots


def default_fallback() -> Path:
    """The per-user cache used when neither the model directory nor a configured folder is writable."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "capbot" / "fast"


def find_built(model_dir: Path, key: str, fallback: Path | None = None, *, beside: bool = True) -> Path | None:
    """The folder holding a complete conversion for `key`, if any."""
    for root in cache_roots(model_dir, fallback, beside=beside):
        candidate = root / key
        if (candidate / META_FILE).is_file():
            return candidate
    return None


def ensure_built(model_dir: Path, *, fallback: Path | None = None, quantize: bool = True, beside: bool = True) -> Path:
    """The conversion folder for `model_dir`'s current weights, building it first when missing or stale."""
    reduce_range = quantize and int8_products_saturate()
    digest, recipe = weights_digest(model_dir), conversion_recipe(quantize, reduce_range=reduce_range)
    key = weights_key(model_dir, recipe, digest=digest)
    found = find_built(model_dir, key, fallback, beside=beside)
    if found:
        return found
    root = _writable_root(model_dir, fallback, beside)
    with FileLock(str(root / ".lock"), timeout=3600):
        found = find_built(model_dir, key, fallback, beside=beside)  # another process may have built it meanwhile
        if found:
            return found
        out = _build(model_dir, root, key, digest, recipe, quantize, reduce_range)
        _remove_stale(root, keep=key, weights=digest)
    return out


def _writable_root(model_dir: Path, fallback: Path | None, beside: bool) -> Path:
    for root in cache_roots(model_dir, fallback, beside=beside):
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=root, prefix=".probe-")
            probe.close()
            return root
        except OSError:
            continue
    raise FastBuildError(f"no writable cache folder for the fast path's conversion of {model_dir} "
                         f"(tried {', '.join(str(r) for r in cache_roots(model_dir, fallback, beside=beside))})", reason="read_only")


def _build(model_dir: Path, root: Path, key: str, digest: str, recipe: str, quantize: bool,
           reduce_range: bool) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    started = time.perf_counter()
    log.info("building the fast path's model", extra={"model_dir": str(model_dir), "cache": str(root / key)})
    try:
        _convert(model_dir, tmp, quantize, reduce_range)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.chmod(0o755)  # mkdtemp makes it private; serving processes of other users read it
    meta = json.loads((tmp / META_FILE).read_text())
    meta.update(key=key, weights=digest, recipe=recipe)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    out = root / key
    os.replace(tmp, out)
    log.info("fast path model built", extra={"cache": str(out), "build_s": round(time.perf_counter() - started, 1)})
    return out


def _convert(model_dir: Path, out: Path, quantize: bool, reduce_range: bool) -> None:
    if "torch" in sys.modules:
        from inference.fast.build import build

        build(model_dir, out, quantize=quantize, reduce_range=reduce_range)
        return
    command = [sys.executable, "-m", "inference.fast.build", str(model_dir), str(out)]
    if not quantize:
        command.append("--no-quantize")
    if reduce_range:
        command.append("--reduce-range")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise FastBuildError(f"converting {model_dir} for the fast path failed: {' | '.join(tail)}", reason="build_failed")


def _remove_stale(root: Path, keep: str, weights: str) -> None:
    """Remove conversions of other weights or of an older `RECIPE` (and unreadable ones). A conversion of
    these weights by today's other int8 variant stays: another kind of CPU sharing the folder uses it."""
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep and not _is_current(entry, weights):
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed a stale fast path conversion", extra={"path": str(entry)})


def _is_current(folder: Path, weights: str) -> bool:
    try:
        meta = json.loads((folder / META_FILE).read_text())
        return meta.get("weights") == weights and str(meta.get("recipe", "")).startswith(RECIPE + "-")
    except (OSError, ValueError, AttributeError):
        return False

