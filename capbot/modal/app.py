"""The deployable capbot app on Modal: `modal deploy -m capbot.modal.app` (or `capbot modal deploy`).

One readable module of Modal definitions; every body is one call into library code (capbot/modal's
`serving`, `gateway`, `jobs`, `container`, which assemble through the composition root `capbot.app`).
Names, GPU types, batching, pools and the schedule come from the plan (`capbot.modal.plan`, from the
CAPBOT_MODAL_* settings where the deploy runs); see docs/modal.md.

- `GpuCaptioner`: captions image bytes with dynamic batching across all callers (`@modal.batched`).
- `Web`: the demo page, JSON API and Slack's /slack/events (ASGI), captioning through `GpuCaptioner`.
- `discord_gateway` + `discord_keeper` + `discord_state`: the Discord client, one call at a time.
- `migrate_database`: the one place the database is migrated (run by `capbot modal deploy`).
- `download_coco`, `build_redcaps`, `train`, `evaluate`, `scheduled_retrain`, `tensorboard`,
  `register_model`, `pull_model`: data, training, retraining and first models.
- `sweep_images`: the retention sweep on its Cron (docs/privacy.md).
Run one by hand with `modal run -m capbot.modal.app::NAME --option value`.
"""

from __future__ import annotations

import os

import modal

from capbot.modal import container, gateway, jobs, serving
from capbot.modal.image import image, mounts, plan, secret, volumes
from capbot.modal.plan import CAPTION_CLASS

# include_source=False: containers import capbot from the installed package, not from a copy of this
# file Modal would otherwise mount beside it.
app = modal.App(plan.app_name, include_source=False)
discord_state = modal.Dict.from_name(f"{plan.app_name}-discord-state", create_if_missing=True)

DAY = 24 * 3600
DISCORD_KEEPER_EVERY = modal.Period(minutes=5)
RETRIES = modal.Retries(max_retries=3, initial_delay=10.0, backoff_coefficient=2.0)  # resumes: safe to repeat


# --- serving -----------------------------------------------------------------------------------------------

@app.cls(image=image, gpu=plan.gpu, volumes=mounts("models"), secrets=[secret],
         scaledown_window=plan.scaledown_window_s, min_containers=plan.min_containers,
         max_containers=plan.max_containers,
         timeout=600)  # one batch, or a cold start: loading a model from the volume
class GpuCaptioner:
    """Captions image bytes with the registry's active model version on a GPU."""

    @modal.enter()
    def start(self) -> None:
        self.container = serving.start_caption_server(volumes["models"])

    @modal.exit()
    def stop(self) -> None:
        self.container.close()

    @modal.batched(max_batch_size=plan.batch_size, wait_ms=plan.batch_wait_ms)
    def caption(self, images: list[bytes], options: list[dict]) -> list[dict]:
        return self.container.server.caption_batch(images, options)


@app.cls(image=image, secrets=[secret], volumes=mounts("blobs"), memory=2048,
         min_containers=plan.web_min_containers, scaledown_window=600, timeout=300)
@modal.concurrent(max_inputs=100, target_inputs=50)
class Web:
    """The web endpoint: page, API and /slack/events."""

    @modal.enter()
    def start(self) -> None:
        self.container = serving.start_web(volumes["blobs"])

    @modal.exit()
    def stop(self) -> None:
        self.container.close()

    @modal.asgi_app()
    def web(self):
        return self.container.app


@app.function(image=image, secrets=[secret], volumes=mounts("blobs"), memory=2048,
              min_containers=0, max_containers=1, timeout=DAY)
def discord_gateway() -> str:
    return gateway.run_discord_gateway(discord_state, discord_gateway.spawn, volumes["blobs"],
                                       own_call_id=modal.current_function_call_id(),
                                       image_id=os.environ.get("MODAL_IMAGE_ID"))


@app.function(image=image, secrets=[secret], schedule=DISCORD_KEEPER_EVERY, max_containers=1, timeout=120)
def discord_keeper() -> str:
    return gateway.keep_discord_running(discord_state, discord_gateway.spawn, gateway.call_is_running,
                                        image_id=os.environ.get("MODAL_IMAGE_ID"))


# --- the database ------------------------------------------------------------------------------------------

@app.function(image=image, secrets=[secret], max_containers=1, timeout=600)
def migrate_database() -> dict:  # named MIGRATION_JOB: containers that find the schema behind call it by name
    return container.migrate_database()


# --- data, training, retraining ----------------------------------------------------------------------------

@app.function(image=image, secrets=[secret], volumes=mounts("datasets"), cpu=4, timeout=DAY, retries=RETRIES)
def download_coco(parts: str = "train2017,val2017,annotations", keep_archives: bool = False, mirror: str = "") -> dict:
    return jobs.download_coco(volumes["datasets"], parts=parts, keep_archives=keep_archives, mirror=mirror)


@app.function(image=image, secrets=[secret], volumes=mounts("datasets"), cpu=4, timeout=DAY, retries=RETRIES)
def build_redcaps(annotations: str = "", hub: str = "", subset: str = "3500,500,1000", seed: int = 0) -> dict:
    return jobs.build_redcaps(volumes["datasets"], annotations=annotations, hub=hub, subset=subset, seed=seed)


@app.function(image=image, gpu=plan.train_gpu, secrets=[secret], volumes=mounts("datasets", "runs", "models"),
              timeout=DAY, retries=RETRIES)
def train(data: str = "coco", name: str = "finetune", model: str = "", steps: int = 5000, batch_size: int = 64,
          lr: float = 5e-5) -> dict:
    return jobs.train_model(volumes["runs"], volumes["models"], data=data, name=name, model=model, steps=steps,
                            batch_size=batch_size, lr=lr)


@app.function(image=image, gpu=plan.train_gpu, secrets=[secret], volumes=mounts("datasets", "models"),
              timeout=4 * 3600)
def evaluate(data: str = "coco", split: str = "val2017", model: str = "", limit: int = 5000) -> dict:
    return jobs.evaluate(model=model, data=data, split=split, limit=limit)


@app.function(image=image, gpu=plan.train_gpu, secrets=[secret],
              volumes=mounts("datasets", "runs", "models", "blobs"), max_containers=1,
              schedule=modal.Cron(plan.retrain_cron) if plan.retrain_cron else None, timeout=DAY)
def scheduled_retrain() -> dict:
    return jobs.scheduled_retrain(volumes["models"], volumes["runs"], volumes["blobs"])


@app.function(image=image, secrets=[secret], volumes=mounts("blobs"), max_containers=1,
              schedule=modal.Cron(plan.sweep_cron) if plan.sweep_cron else None, timeout=3600)
def sweep_images() -> dict:
    return jobs.sweep_images(volumes["blobs"])


@app.function(image=image, volumes=mounts("runs"), scaledown_window=120, timeout=3600)
@modal.concurrent(max_inputs=50)
@modal.wsgi_app()
def tensorboard():
    return jobs.tensorboard_app(volumes["runs"])


@app.function(image=image, secrets=[secret], volumes=mounts("models"), timeout=600)
def register_model(version_dir: str, activate: bool = False) -> dict:
    return jobs.register_model(volumes["models"], version_dir=version_dir, activate=activate)


@app.function(image=image, secrets=[secret], volumes=mounts("models"), cpu=2, memory=8192, timeout=3600)
def pull_model(hub_id: str = "nlpconnect/vit-gpt2-image-captioning", activate: bool = False) -> dict:
    return jobs.pull_hub_model(volumes["models"], hub_id=hub_id, activate=activate)


assert GpuCaptioner.__name__ == CAPTION_CLASS  # ModalCaptioner looks the class up by this name
