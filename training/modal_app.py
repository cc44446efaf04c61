"""Modal glue for data, training and retraining (deployed by `capbot.modal_app`).

- `download_coco`, `build_redcaps`: the resumable dataset code, run remotely into the datasets Volume.
- `train`: fine-tuning on a GPU; checkpoints and TensorBoard logs on the runs Volume, committed every few
  minutes, so a preempted run (retried by Modal) resumes from its last checkpoint.
- `evaluate`: COCO caption metrics on a GPU.
- `scheduled_retrain`: the Modal Cron (CAPBOT_MODAL_RETRAIN_CRON) calling `training.retrain.retrain`; the
  candidate is committed to the models Volume before the registry can promote it.
- `tensorboard`: TensorBoard as a web app over the runs Volume.
- `register_model`, `pull_model`: getting the first model in (`capbot modal upload-model` / `pull-model`).

Run one by hand with `modal run -m capbot.modal_app::NAME --option value` (see docs/modal.md). Each body is
one call into `capbot.modal_jobs`.
"""

from __future__ import annotations

import modal

from capbot import modal_common as common
from capbot import modal_jobs

app = common.new_app()
plan = common.plan
DAY = 24 * 3600
RETRIES = modal.Retries(max_retries=3, initial_delay=10.0, backoff_coefficient=2.0)  # resumes: safe to repeat


@app.function(image=common.image, secrets=[common.secret], volumes=common.mounts("datasets"), cpu=4,
              timeout=DAY, retries=RETRIES)
def download_coco(parts: str = "train2017,val2017,annotations", keep_archives: bool = False, mirror: str = "") -> dict:
    return modal_jobs.download_coco(common.volumes["datasets"], parts=parts, keep_archives=keep_archives,
                                    mirror=mirror)


@app.function(image=common.image, secrets=[common.secret], volumes=common.mounts("datasets"), cpu=4,
              timeout=DAY, retries=RETRIES)
def build_redcaps(annotations: str = "", hub: str = "", subset: str = "3500,500,1000", seed: int = 0) -> dict:
    return modal_jobs.build_redcaps(common.volumes["datasets"], annotations=annotations, hub=hub, subset=subset,
                                    seed=seed)


@app.function(image=common.image, gpu=plan.train_gpu, secrets=[common.secret],
              volumes=common.mounts("datasets", "runs", "models"), timeout=DAY, retries=RETRIES)
def train(data: str = "coco", name: str = "finetune", model: str = "", steps: int = 5000, batch_size: int = 64,
          lr: float = 5e-5) -> dict:
    return modal_jobs.train_model(common.volumes["runs"], common.volumes["models"], data=data, name=name,
                                  model=model, steps=steps, batch_size=batch_size, lr=lr)


@app.function(image=common.image, gpu=plan.train_gpu, secrets=[common.secret],
              volumes=common.mounts("datasets", "models"), timeout=4 * 3600)
def evaluate(data: str = "coco", split: str = "val2017", model: str = "", limit: int = 5000) -> dict:
    return modal_jobs.evaluate(model=model, data=data, split=split, limit=limit)


@app.function(image=common.image, gpu=plan.train_gpu, secrets=[common.secret],
              volumes=common.mounts("datasets", "runs", "models", "blobs"), max_containers=1,
              schedule=modal.Cron(plan.retrain_cron) if plan.retrain_cron else None, timeout=DAY)
def scheduled_retrain() -> dict:
    return modal_jobs.scheduled_retrain(common.volumes["models"], common.volumes["runs"], common.volumes["blobs"])


@app.function(image=common.image, volumes=common.mounts("runs"), scaledown_window=120, timeout=3600)
@modal.concurrent(max_inputs=50)
@modal.wsgi_app()
def tensorboard():
    return modal_jobs.tensorboard_app(common.volumes["runs"])


@app.function(image=common.image, secrets=[common.secret], volumes=common.mounts("models"), timeout=600)
def register_model(version_dir: str, activate: bool = False) -> dict:
    return modal_jobs.register_model(common.volumes["models"], version_dir=version_dir, activate=activate)


@app.function(image=common.image, secrets=[common.secret], volumes=common.mounts("models"), cpu=2, memory=8192,
              timeout=3600)
def pull_model(hub_id: str = "nlpconnect/vit-gpt2-image-captioning", activate: bool = False) -> dict:
    return modal_jobs.pull_hub_model(common.volumes["models"], hub_id=hub_id, activate=activate)
