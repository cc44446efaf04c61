"""`ModalCaptioner` against a local stand-in of the deployed class: the real GPU-side code (`CaptionServer`
on the tiny model) answers each spawned call in this process; Modal's failures are raised where Modal
raises them, and each must come out as one clear error."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage
from modal import exception as modal_errors
from PIL import Image

from inference.captioner import LocalCaptioner
from inference.images import ImageError
from inference.modal_captioner import UNKNOWN_VERSION, ModalCaptioner, ModalServiceError
from inference.modal_serving import CaptionServer
from inference.modeldir import load_metadata
from inference.types import Captioner, GenerationOptions
from tests.modal_support import LocalDeployment, LocalMethod
from tests.specs import EXACT_GREEDY, exact_greedy

pytestmark = pytest.mark.filterwarnings("error::modal.exception.DeprecationError")

PHOTOS = Path(skimage.__file__).parent / "data"
OPTIONS = GenerationOptions(max_new_tokens=5)


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """The GPU side of the deployed class, on the tiny model on CPU."""
    return CaptionServer(lambda location: LocalCaptioner(location, EXACT_GREEDY), lambda: str(tiny_model_dir))


def _remote(server, **limits):
    """A stand-in method running `server` (optionally with stricter image limits than the caller's)."""
    for name, value in limits.items():
        setattr(server, name, value)
    return LocalMethod(lambda image, options: server.caption_batch([image], [options])[0])


def _captioner(deployment: LocalDeployment, **kwargs) -> ModalCaptioner:
    kwargs.setdefault("default_options", OPTIONS)
    return ModalCaptioner("capbot-test", "GpuCaptioner", lookup=deployment.lookup, **kwargs)


def test_captions_real_photos_through_the_deployed_class(server, tiny_model_dir):
    deployment = LocalDeployment(_remote(server))
    captioner = _captioner(deployment)
    assert isinstance(captioner, Captioner)
    assert captioner.model_version == UNKNOWN_VERSION
    photos = [(PHOTOS / "chelsea.png").read_bytes(), (PHOTOS / "rocket.jpg").read_bytes()]
    pixels = Image.open(PHOTOS / "coffee.png")
    captions = captioner.caption([*photos, pixels])
    version = load_metadata(tiny_model_dir).version
    assert [c.model_version for c in captions] == [version] * 3
    assert all(c.text and c.timings_ms["generate"] > 0 for c in captions)
    assert captioner.model_version == version
    assert deployment.looked_up == [("capbot-test", "GpuCaptioner")]
    sent = [image for image, _ in _spawned(deployment)]
    assert sent[:2] == photos  # the original files travel, not a re-encoding
    assert Image.open(io.BytesIO(sent[2])).size == pixels.size


def test_same_captions_as_the_local_engine(server, tiny_model_dir):
    photo = (PHOTOS / "astronaut.png").read_bytes()
    local = LocalCaptioner(tiny_model_dir, exact_greedy(options=OPTIONS))
    remote = _captioner(LocalDeployment(_remote(server)))
    assert [c.text for c in remote.caption([photo])] == [c.text for c in local.caption([photo])]


def test_options_reach_the_gpu_side(server):
    deployment = LocalDeployment(_remote(server))
    options = GenerationOptions(num_beams=3, max_new_tokens=4, num_alternatives=2)
    caption = _captioner(deployment).caption([(PHOTOS / "chelsea.png").read_bytes()], options)[0]
    assert _spawned(deployment)[0][1]["num_beams"] == 3
    assert len(caption.alternatives) <= 2 and caption.text not in caption.alternatives


def test_bad_image_is_refused_before_any_gpu_call(server):
    deployment = LocalDeployment(_remote(server))
    captioner = _captioner(deployment)
    with pytest.raises(ImageError) as refused:
        captioner.caption([(PHOTOS / "chelsea.png").read_bytes(), b"not an image at all"])
    assert refused.value.reason == "not_image"
    assert _spawned(deployment) == []  # not even the good image was sent


def test_image_refused_remotely_comes_back_as_the_same_typed_error(server):
    deployment = LocalDeployment(_remote(server, max_image_pixels=1000))  # stricter than the caller
    try:
        with pytest.raises(ImageError) as refused:
            _captioner(deployment).caption([(PHOTOS / "chelsea.png").read_bytes()])
    finally:
        server.max_image_pixels = 40_000_000
    assert refused.value.reason == "too_many_pixels"
    assert "too many pixels" in refused.value.message


def test_no_credentials(server):
    deployment = LocalDeployment(LocalMethod(lambda *a: {}, spawn_error=modal_errors.AuthError("Token missing.")))
    error = _error(deployment)
    assert error.reason == "modal_auth"
    assert error.message.startswith("no Modal credentials: run `modal token new`")


def test_app_not_deployed(server):
    missing = modal_errors.NotFoundError("App 'capbot-test' not found in environment 'main'")
    error = _error(LocalDeployment(_remote(server), lookup_error=missing))
    assert error.reason == "modal_not_deployed"
    assert "'capbot-test'" in error.message and "capbot modal deploy" in error.message


def test_modal_unreachable(server):
    down = modal_errors.ConnectionError("Deadline exceeded")
    error = _error(LocalDeployment(LocalMethod(lambda *a: {}, spawn_error=down)))
    assert error.reason == "modal_unreachable" and "Deadline exceeded" in error.message


def test_a_gpu_call_that_ran_past_its_own_limit_is_a_timeout(server):
    method = _remote(server)
    method.failures = [modal_errors.FunctionTimeoutError("function timed out")]
    error = _error(LocalDeployment(method), timeout_s=7)
    assert error.reason == "modal_timeout"
    assert "did not answer within 7 s (the call ended without a result (FunctionTimeoutError))" in error.message
    assert len(method.calls) == 1 and not method.calls[0].cancelled


def test_remote_crash(server, caplog):
    method = _remote(server)
    method.failures = [RuntimeError("CUDA error: out of memory")]
    with caplog.at_level(logging.ERROR):
        error = _error(LocalDeployment(method))
    assert error.reason == "modal_remote_error"
    assert "RuntimeError: CUDA error: out of memory" in error.message
    assert "\n" not in error.message
    assert any(record.exc_info for record in caplog.records)  # the traceback goes to the log, not the user


def test_without_credentials_the_real_modal_client_says_what_is_missing(tmp_path):
    """The acceptance line: `CAPBOT_CAPTIONER=modal capbot caption photo.jpg` without credentials."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes((PHOTOS / "rocket.jpg").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "CAPBOT_"))}
    env.update(HOME=str(tmp_path / "home"), CAPBOT_CAPTIONER="modal")
    (tmp_path / "home").mkdir()
    done = subprocess.run([sys.executable, "-m", "capbot", "caption", str(photo)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and "
                     "MODAL_TOKEN_SECRET"], done.stderr


def _error(deployment: LocalDeployment, **kwargs) -> ModalServiceError:
    with pytest.raises(ModalServiceError) as failed:
        _captioner(deployment, **kwargs).caption([(PHOTOS / "chelsea.png").read_bytes()])
    return failed.value


def _spawned(deployment: LocalDeployment) -> list[tuple[bytes, dict]]:
    return deployment.caption.sent


def test_check_looks_the_class_up_before_any_image(server):
    deployment = LocalDeployment(_remote(server))
    assert _captioner(deployment).check().model_version == UNKNOWN_VERSION
    assert deployment.hydrated and deployment.caption.sent == []
    missing = LocalDeployment(_remote(server), lookup_error=modal_errors.NotFoundError("no such app"))
    with pytest.raises(ModalServiceError) as failed:
        _captioner(missing).check()
    assert failed.value.reason == "modal_not_deployed"


def test_a_missing_secret_at_deploy_is_not_called_a_missing_deployment():
    from inference.modal_captioner import ModalErrors

    with pytest.raises(ModalServiceError) as failed:
        with ModalErrors("capbot", "the deploy", not_found="create the Secret 'capbot' first"):
            raise modal_errors.NotFoundError("Secret 'capbot' not found in environment 'main'")
    assert failed.value.message == ("create the Secret 'capbot' first (Secret 'capbot' not found in environment "
                                    "'main')")


# --- issue 21: one caller's timeout never costs other callers their captions ------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Unanswered:
    """A spawned call that is still pending whenever it is asked (a cold start, a long queue): `get(timeout)`
    lets `timeout` seconds pass on the clock and raises the builtin TimeoutError, as Modal's client does."""

    def __init__(self, clock: _Clock) -> None:
        self.clock, self.waited, self.cancelled = clock, [], False
        self.object_id = "fc-pending"

    def get(self, timeout=None):
        self.waited.append(timeout)
        self.clock.now += timeout
        raise TimeoutError()

    def cancel(self) -> None:
        self.cancelled = True  # in a @modal.batched batch this would interrupt every other caller's input


class _Pending:
    def __init__(self, clock: _Clock) -> None:
        self.clock, self.calls = clock, []

    def spawn(self, image, options):
        self.calls.append(_Unanswered(self.clock))
        return self.calls[-1]


def test_a_timed_out_caption_is_never_cancelled_nor_sent_again():
    method = _Pending(_Clock())
    with pytest.raises(ModalServiceError) as failed:
        _captioner(LocalDeployment(method), timeout_s=30).caption([(PHOTOS / "chelsea.png").read_bytes()])
    assert failed.value.reason == "modal_timeout"
    assert len(method.calls) == 1 and not method.calls[0].cancelled


def test_one_deadline_covers_every_image_of_a_request():
    clock = _Clock()
    method = _Pending(clock)
    photos = [(PHOTOS / name).read_bytes() for name in ("chelsea.png", "rocket.jpg", "coffee.png")]
    with pytest.raises(ModalServiceError) as failed:
        _captioner(LocalDeployment(method), timeout_s=100, clock=clock).caption(photos)
    assert "did not answer within 100 s" in failed.value.message
    assert len(method.calls) == 3 and not any(call.cancelled for call in method.calls)
    assert sum(sum(call.waited) for call in method.calls) <= 100  # under Modal's 150 s web request limit
