"""Modal glue for the chat side (deployed by `capbot.modal_app`): the web endpoint and the Discord gateway.

- `web`: the demo page, the JSON API and Slack's `/slack/events`, an ASGI app on CPU containers that
  caption through the GPU class (`ModalCaptioner`).
- `discord_gateway`: the Discord client, a long-running function with at most one container. It runs
  just under Modal's 24 h limit, spawns its successor and disconnects; the successor is queued behind it
  (one container) and starts as soon as it returns. `discord_keeper` runs every few minutes and starts the
  gateway when no call of it is queued or running (after a crash or the first deploy). `discord_state`
  remembers the current call and when the gateway last stopped, so each start logs the gap.

Tokens and the database URL come from the Modal Secret, never from code or logs. Each body is one call
into `capbot.modal_jobs`.
"""

from __future__ import annotations

import modal

from capbot import modal_common as common
from capbot import modal_jobs

app = common.new_app()
plan = common.plan
discord_state = modal.Dict.from_name(f"{plan.app_name}-discord-state", create_if_missing=True)

DISCORD_KEEPER_EVERY = modal.Period(minutes=5)


@app.function(image=common.image, secrets=[common.secret], volumes=common.mounts("blobs"), memory=2048,
              min_containers=plan.web_min_containers, scaledown_window=600, timeout=300)
@modal.concurrent(max_inputs=100, target_inputs=50)
@modal.asgi_app()
def web():
    return modal_jobs.web_app(common.volumes["blobs"])


@app.function(image=common.image, secrets=[common.secret], volumes=common.mounts("blobs"), memory=2048,
              min_containers=0, max_containers=1, timeout=24 * 3600)
def discord_gateway() -> str:
    return modal_jobs.run_discord_gateway(discord_state, discord_gateway.spawn, common.volumes["blobs"])


@app.function(image=common.image, secrets=[common.secret], schedule=DISCORD_KEEPER_EVERY, max_containers=1,
              timeout=120)
def discord_keeper() -> str:
    return modal_jobs.keep_discord_running(discord_state, discord_gateway.spawn, modal_jobs.call_is_running)
