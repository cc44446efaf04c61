"""Settings to captioning objects: the one place CLI commands and the server turn `Settings` into a captioner."""

from __future__ import annotations

from inference.types import GenerationOptions


def generation_options(settings, *, num_beams: int | None = None, max_new_tokens: int | None = None) -> GenerationOptions:
    """The decoding defaults from settings, with optional per-command overrides."""
    return GenerationOptions(
        num_beams=num_beams or settings.num_beams,
        max_new_tokens=max_new_tokens or settings.max_new_tokens,
        no_repeat_ngram_size=settings.no_repeat_ngram_size,
    )


def local_captioner(settings, model: str | None = None, *, device: str | None = None,
                    batch_size: int | None = None, options: GenerationOptions | None = None):
    """An in-process `LocalCaptioner` configured from settings (model, device, dtype, precision mode,
    threads, batch, image limits); fast-path conversions of a read-only model go under data_dir/cache."""
    from inference.captioner import LocalCaptioner

    return LocalCaptioner(
        model or settings.model,
        device=device or settings.device,
        dtype=settings.dtype,
        precision=settings.precision,
        threads=settings.threads,
        cache_dir=settings.data_dir / "cache" / "fast",
        batch_size=batch_size or settings.batch_size,
        max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels,
        default_options=options or generation_options(settings),
    )


def modal_captioner(settings, *, options: GenerationOptions | None = None, lookup=None):
    """A `ModalCaptioner` calling the GPU class of the deployed app (nothing is sent yet): the app name and
    wait of the plan a container was deployed with, or of the settings elsewhere."""
    from capbot.modal.plan import CAPTION_CLASS, ModalPlan
    from inference.modal_captioner import ModalCaptioner, deployed_class

    plan = ModalPlan.current(lambda: settings)
    return ModalCaptioner(
        plan.app_name, CAPTION_CLASS,
        timeout_s=plan.call_timeout_s,
        max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels,
        default_options=options or generation_options(settings),
        lookup=lookup or deployed_class,
    )


def configured_captioner(settings, model: str | None = None, *, device: str | None = None,
                         batch_size: int | None = None, options: GenerationOptions | None = None):
    """The captioner CAPBOT_CAPTIONER chooses: in-process (`model`, or settings.model) or the deployed Modal class.

    The Modal class always serves the registry's active version, so asking it for another model is refused.
    """
    if settings.captioner == "modal":
        if model is not None or device is not None:
            from storage.errors import UserError

            what = "--model" if model is not None else "--device"
            raise UserError(f"{what} cannot be used with CAPBOT_CAPTIONER=modal: the deployed GPU class serves "
                            "the registry's active version", reason="modal_fixed_model")
        return modal_captioner(settings, options=options)
    return local_captioner(settings, model, device=device, batch_size=batch_size, options=options)


def serving_captioner(settings, model: str | None = None):
    """The server's local captioner: `local_captioner`, with micro-batching of concurrent requests
    unless CAPBOT_BATCH_WAIT_MS is 0."""
    captioner = local_captioner(settings, model)
    if settings.batch_wait_ms <= 0:
        return captioner
    from inference.batching import BatchingCaptioner

    return BatchingCaptioner(captioner, max_images=settings.batch_size, wait_ms=settings.batch_wait_ms)
