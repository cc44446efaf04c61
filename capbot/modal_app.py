"""The deployable capbot app on Modal: `modal deploy -m capbot.modal_app` (or `capbot modal deploy`).

It includes the three partial apps, so one deploy ships everything: the GPU captioning class
(`inference.modal_app`), the web endpoint and the Discord gateway (`bots.modal_app`), and data, training,
scheduled retraining and TensorBoard (`training.modal_app`). Names, GPU types, batching and the schedule
come from the CAPBOT_MODAL_* settings where the deploy runs (see docs/modal.md).
"""

from __future__ import annotations

from bots import modal_app as bots_app
from capbot import modal_common as common
from inference import modal_app as inference_app
from training import modal_app as training_app

app = common.new_app()
for part in (inference_app.app, bots_app.app, training_app.app):
    app.include(part)
