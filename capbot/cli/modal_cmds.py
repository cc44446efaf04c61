"""`capbot modal deploy | upload-model | pull-model`: capbot on Modal in one command, and its first model."""

from __future__ import annotations

from pathlib import Path

import typer

from capbot.cli.root import modal_group


@modal_group.command("deploy")
def deploy() -> None:
    """Deploy everything to Modal: the GPU captioning class, the web endpoint (page, API, /slack/events), the
    Discord gateway, training, the scheduled retraining and TensorBoard; then migrate the database once.
    `modal deploy -m capbot.modal.app` deploys the same (its containers then ask for the migration)."""
    from capbot.modal.deploy import deploy as deploy_app

    urls = deploy_app()
    web, board = urls.get("web"), urls.get("tensorboard")
    if web:
        typer.echo(f"web page and API: {web}/")
        typer.echo(f"Slack request URL: {web}/slack/events")
    if board:
        typer.echo(f"TensorBoard: {board}/")
    if urls.get("revision"):
        typer.echo(f"database: migrated to {urls['revision']}")
    typer.echo("Discord: the gateway starts within 5 minutes when CAPBOT_DISCORD_TOKEN is in the Secret")


@modal_group.command("upload-model")
def upload_model(
    model_dir: Path = typer.Argument(..., help="A capbot model directory (with capbot.json), e.g. from `capbot train`."),
    activate: bool = typer.Option(False, "--activate", help="Make it the active version (serving) right away."),
) -> None:
    """Copy a local model directory into the models Volume and register it in the deployed app's registry."""
    from capbot.modal.deploy import upload_model as upload

    result = upload(model_dir, activate=activate)
    typer.echo(f"model {result['version']} is on Modal at {result['location']}; active version: {result['active']}")


@modal_group.command("pull-model")
def pull_model(
    hub_id: str = typer.Argument("nlpconnect/vit-gpt2-image-captioning", help="Hugging Face Hub id of a ViT+GPT-2 model."),
    activate: bool = typer.Option(False, "--activate", help="Make it the active version (serving) right away."),
) -> None:
    """Have the deployed app download a hub model into the models Volume and register it."""
    from capbot.modal.deploy import pull_model as pull

    result = pull(hub_id, activate=activate)
    typer.echo(f"model {result['version']} is on Modal at {result['location']}; active version: {result['active']}")
