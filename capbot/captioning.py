"""Settings to captioning objects: `captioner_spec` is the one place `Settings` become a `CaptionerSpec`; the
server, `capbot caption`, `capbot evaluate`, retraining and the Modal classes build their captioners from it."""

from __future__ import annotations

from dataclasses import replace

from inference.spec import CaptionerSpec
from inference.types import GenerationOptions


def captioner_spec(settings) -> CaptionerSpec:
    """How captions are made, from settings: the local engine's device, dtype, engine mode, threads and batch,
    the intake's limits, and what is served. Served captions offer `num_alternatives` other captions, so
    the search has at least that many + 1 beams (alternatives are its n-best), and each caption's
    confidence is scored on `confidence_views` views (None: the device decides, `inference.views.views_for`)."""
    alternatives = settings.num_alternatives
    options = GenerationOptions(num_beams=max(settings.num_beams, alternatives + 1), max_new_tokens=settings.max_new_tokens,
                                no_repeat_ngram_size=settings.no_repeat_ngram_size, num_alternatives=alternatives,
                                confidence_views=settings.confidence_views)
    return CaptionerSpec(
        device=settings.device, dtype=settings.dtype, precision=settings.precision, threads=settings.threads,
        batch_size=settings.batch_size, options=options, max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels, prompt=settings.caption_prompt,
        cache_dir=settings.data_dir / "cache" / "fast",  # fast conversions of a read-only model directory
    )


def local_captioner(spec: CaptionerSpec, model: str):
    """An in-process `LocalCaptioner` of `model` (hub id or directory) made as `spec` says."""
    from inference.captioner import LocalCaptioner

    return LocalCaptioner(model, spec)


def modal_captioner(settings, spec: CaptionerSpec, *, lookup=None):
    """A `ModalCaptioner` calling the GPU class of the deployed app (nothing is sent yet): the app name and
    wait of the plan a container was deployed with, or of the settings elsewhere; a call without options of
    its own asks for `spec.options`, as a local captioner would."""
    from capbot.modal.plan import CAPTION_CLASS, ModalPlan
    from inference.modal_captioner import ModalCaptioner, deployed_class

    plan = ModalPlan.current(lambda: settings)
    return ModalCaptioner(
        plan.app_name, CAPTION_CLASS,
        timeout_s=plan.call_timeout_s,
        max_image_bytes=spec.max_image_bytes,
        max_image_pixels=spec.max_image_pixels,
        default_options=spec.options,
        lookup=lookup or deployed_class,
    )


def configured_captioner(settings, spec: CaptionerSpec, model: str | None = None, *, device: str | None = None):
    """The captioner CAPBOT_CAPTIONER chooses: in-process (`model`, or settings.model; `device` over the
    spec's) or the deployed Modal class.

    The Modal class always serves the registry's active version, so asking it for another model is refused.
    """
    if settings.captioner == "modal":
        if model is not None or device is not None:
            from storage.errors import UserError

            what = "--model" if model is not None else "--device"
            raise UserError(f"{what} cannot be used with CAPBOT_CAPTIONER=modal: the deployed GPU class serves "
                            "the registry's active version", reason="modal_fixed_model")
        return modal_captioner(settings, spec)
    return local_captioner(replace(spec, device=device) if device else spec, model or settings.model)


def serving_captioner(settings, spec: CaptionerSpec, model: str):
    """The server's local captioner: `local_captioner`, with micro-batching of concurrent requests
    unless CAPBOT_BATCH_WAIT_MS is 0."""
    captioner = local_captioner(spec, model)
    if settings.batch_wait_ms <= 0:
        return captioner
    from inference.batching import BatchingCaptioner

    return BatchingCaptioner(captioner, max_images=spec.batch_size, wait_ms=settings.batch_wait_ms)
