"""Modal glue for captioning: the GPU class every bot and the web endpoint call (deployed by `capbot.modal_app`).

`GpuCaptioner` loads the registry's active version once per container (`@modal.enter`) from the models
Volume and captions image bytes with dynamic batching across all callers (`@modal.batched`: each call
sends one image, the method receives lists and returns one result per image). A class with a batched
method can have no other methods, so everything else lives in other functions. The work is library code:
`capbot.modal_jobs.start_caption_server` and `inference.modal_serving.CaptionServer`.
Callers reach it through `inference.modal_captioner.ModalCaptioner` (`modal.Cls.from_name`).
"""

from __future__ import annotations

import modal

from capbot import modal_common as common
from capbot import modal_jobs
from capbot.modal_config import CAPTION_CLASS

app = common.new_app()
plan = common.plan


@app.cls(
    image=common.image,
    gpu=plan.gpu,
    volumes=common.mounts("models"),
    secrets=[common.secret],
    scaledown_window=plan.scaledown_window_s,
    min_containers=plan.min_containers,
    timeout=600,  # one batch, or a cold start: loading a model from the volume
)
class GpuCaptioner:
    """Captions image bytes with the registry's active model version on a GPU."""

    @modal.enter()
    def start(self) -> None:
        self.server = modal_jobs.start_caption_server(common.volumes["models"])

    @modal.batched(max_batch_size=plan.batch_size, wait_ms=plan.batch_wait_ms)
    def caption(self, images: list[bytes], options: list[dict]) -> list[dict]:
        return self.server.caption_batch(images, options)


assert GpuCaptioner.__name__ == CAPTION_CLASS  # ModalCaptioner looks the class up by this name
