"""One way to load a pretrained piece (model, tokenizer, image processor) from a hub id or a local directory.

`from_pretrained` raises bare `OSError`s with long messages for a missing directory, an unknown hub id or
an unreachable hub; `load_pretrained` turns them into one `ModelLoadError` a person can act on. A hub id
missing from the cache first gets a quick connection check, because huggingface_hub retries an
unreachable hub for about 30 s before failing (a server without internet would wait that long to say so).

Engines, training and `capbot models import` load a hub model from its local snapshot
(`model_directory`): the files capbot reads, downloaded once, in one weights format. transformers 5,
given a hub id whose repository has only `pytorch_model.bin` (the default model's), starts a background
thread on every load that asks the hub to convert it to safetensors and then downloads the result (982 MB
for the default model; the thread is not a daemon, so a command waits for it). Loading from a directory
never starts it; for the hub ids still passed to `from_pretrained` (`capbot models init --encoder ...`),
`load_pretrained` sets transformers' own switch, DISABLE_SAFETENSORS_CONVERSION, unless it is set already.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies

from storage.errors import UserError

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModelLoadError(UserError):
    """A model, tokenizer or image processor could not be loaded from the given source."""


def looks_like_path(source: str) -> bool:
    """True when `source` is meant as a filesystem path rather than a hub id like `owner/name`."""
    if Path(source).expanduser().exists():
        return True
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def missing_directory(path: Path, what: str = "model") -> ModelLoadError:
    """The error for a `path` that should be a model directory and is not one: a file inside one (say
    `model.safetensors`) is answered with the directory to pass instead."""
    if path.is_file():
        return ModelLoadError(f"{path} is a file; give the {what} directory that holds it: {path.parent}",
                              reason="not_a_directory")
    return ModelLoadError(f"{what} directory not found: {path}", reason="not_found")


# What capbot reads from a model repository: configs, image processor, tokenizer files, and one format of
# weights (safetensors, else a PyTorch .bin; repositories often carry TensorFlow and Flax copies as well).
_REPO_FILES = ("*.json", "*.txt", "*.model", "*.jinja")  # *.jinja: a chat template saved by transformers 5
_SAFETENSORS, _BIN = ("*.safetensors",), ("*.bin",)


def model_directory(source: str | Path) -> Path:
    """A local directory holding the model `source`: the directory itself, or the hub id's cached snapshot
    (downloaded first when missing; `ModelLoadError` when it cannot be)."""
    if looks_like_path(str(source)):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise missing_directory(path)
        return path
    from huggingface_hub import snapshot_download

    folder = Path(load_pretrained(snapshot_download, str(source), "model", allow_patterns=[*_REPO_FILES, *_SAFETENSORS]))
    if not any(folder.glob("*.safetensors")):
        folder = Path(load_pretrained(snapshot_download, str(source), "model", allow_patterns=[*_REPO_FILES, *_BIN]))
    return folder


def load_pretrained(loader: Callable[..., T], source: str | Path, what: str, **kwargs: Any) -> T:
    """Call `loader(source, **kwargs)` (a `from_pretrained`), raising `ModelLoadError` for user-fixable failures.

    `what` names the piece in messages ("model", "tokenizer", "image processor").
    """
    os.environ.setdefault("DISABLE_SAFETENSORS_CONVERSION", "1")  # see the module docstring
    text = str(source)
    if looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise missing_directory(path, what)
        text = str(path)
    else:
        # Cache first: a model downloaded once loads with no network call (fast start-up, works offline);
        # only a model missing from the cache goes to the hub.
        try:
            return loader(text, local_files_only=True, **kwargs)
        except (OSError, ValueError):
            pass
        if _should_probe() and not hub_reachable(hub_endpoint()):
            raise _unreachable(what, text)
    try:
        return loader(text, **kwargs)
    except OSError as exc:
        raise _explain(exc, text, what) from exc
    except ValueError as exc:  # e.g. no config.json, or one naming an unknown model type
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " (build one with `capbot models init`)" if Path(text).is_dir() else ""
        raise ModelLoadError(f"cannot load {what} from {text}: {first_line}{hint}", reason="invalid") from exc


def _explain(exc: OSError, source: str, what: str) -> ModelLoadError:
    message = str(exc)
    log.debug("from_pretrained failed", extra={"source": source, "what": what, "error": message[:500]})
    if Path(source).is_dir():
        return ModelLoadError(
            f"{source} is not a complete model directory: no {what} files found (build one with `capbot models init`)",
            reason="invalid",
        )
    if "couldn't connect" in message or "offline" in message.lower() or "connection" in message.lower():
        return _unreachable(what, source)
    return ModelLoadError(
        f"{what} {source!r} not found: it is neither a local directory nor a model on the Hugging Face Hub",
        reason="not_found",
    )


def _unreachable(what: str, source: str) -> ModelLoadError:
    return ModelLoadError(
        f"cannot download {what} {source!r}: the Hugging Face Hub is unreachable and it is not in the local "
        "cache; use a local model directory (e.g. from `capbot models init`)",
        reason="hub_unreachable",
    )


def hub_endpoint() -> str:
    """The hub's base URL: `HF_ENDPOINT` (a mirror) when set, else huggingface_hub's default."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the endpoint's host opens within `timeout` seconds."""
    url = urlsplit(endpoint)
    if not url.hostname:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, unreachable network, timeout
        return False


def _should_probe() -> bool:
    # Offline mode (as huggingface_hub itself reads it) already fails at once; behind a proxy a direct
    # connection proves nothing.
    from huggingface_hub import constants

    proxies = getproxies()
    return not constants.is_offline_mode() and not any(proxies.get(k) for k in ("https", "http", "all"))
