"""`capbot train` (fine-tune a model on a dataset) and `capbot tensorboard` (serve the training logs).

Several GPUs: `torchrun --nproc_per_node N -m capbot train ...` (every process runs this command; only
rank 0 evaluates, writes and prints the result).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from capbot.cli.root import app
from capbot.errors import UserError


@app.command("train")
def train_command(
    data: str = typer.Option(..., "--data", help="COCO-format dataset directory (synthetic, COCO 2017, Karpathy) or a .jsonl of {image, caption} rows."),
    out: Path = typer.Option(..., "--out", help="Run directory: checkpoints/, tb/ (TensorBoard logs) and model/ (the best version)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model directory or hub id to start from (default: settings.model)."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimizer steps of the whole run."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Examples per process per micro-batch."),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1, help="Micro-batches per optimizer step."),
    lr: float = typer.Option(5e-4, "--lr", min=0.0, help="Peak learning rate (AdamW), reached after warmup."),
    warmup: int = typer.Option(100, "--warmup", min=0, help="Linear warmup steps before the cosine decay."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", min=0.0, help="AdamW weight decay (not on biases and norms)."),
    train_split: str = typer.Option("train", "--train-split", help="Split to train on (train, train2017, or a Karpathy split)."),
    val_split: str = typer.Option("val", "--val-split", help="Split to evaluate on; 'none' to skip evaluation."),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate every N steps (0: only at the end)."),
    eval_limit: int = typer.Option(500, "--eval-limit", min=1, help="Validation images per evaluation."),
    meteor: bool = typer.Option(False, "--meteor/--no-meteor", help="Include METEOR in evaluations (starts a JVM)."),
    save_every: int = typer.Option(0, "--save-every", min=0, help="Checkpoint every N steps (0: at each evaluation)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Train only the decoder."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Trade compute for memory."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on capable GPUs, else fp32), fp32 or bf16."),
    max_length: int = typer.Option(32, "--max-length", min=2, help="Longest training caption in tokens (with EOS)."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes decoding images."),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and dropout."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the best model as a candidate version in the database."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="Write TensorBoard logs to OUT/tb."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Fine-tune a captioning model; the best checkpoint by CIDEr becomes OUT/model."""
    from capbot.settings import get_settings
    from training.train import TrainArgs, train

    settings = get_settings()
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"--precision must be auto, fp32 or bf16, not {precision!r}", reason="bad_args")
    args = TrainArgs(
        model=model or settings.model, data=data, out=out, steps=steps, batch_size=batch_size, grad_accum=grad_accum,
        lr=lr, warmup_steps=warmup, weight_decay=weight_decay, train_split=train_split,
        val_split=None if val_split.lower() == "none" else val_split, eval_every=eval_every, eval_limit=eval_limit,
        eval_meteor=meteor, save_every=save_every, resume=resume, freeze_encoder=freeze_encoder,
        gradient_checkpointing=gradient_checkpointing, precision=precision, max_length=max_length,  # type: ignore[arg-type]
        device=settings.device, num_workers=workers, seed=seed, tensorboard=tensorboard,
        num_beams=settings.num_beams, max_new_tokens=settings.max_new_tokens,
        no_repeat_ngram_size=settings.no_repeat_ngram_size,
        database_url=settings.database_url if register else None,
    )
    result = train(args)
    if result.model_dir is None:  # a non-main torchrun process, or stopped before the end
        return
    summary = {
        "model_dir": str(result.model_dir), "version": result.version, "steps": result.steps,
        "best_step": result.best_step, "metrics": result.metrics, "final_loss": result.final_loss,
        "samples_per_second": round(result.samples_per_second, 2), "seconds": round(result.seconds, 1),
        "registered": result.registered,
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    cider = result.metrics.get("cider")
    typer.echo(f"model {result.version} saved to {result.model_dir} (best step {result.best_step}"
               + (f", CIDEr {cider:.3f})" if cider is not None else ")"))
    if result.registered:
        typer.echo(f"registered as a candidate version; make it serve with `capbot models promote {result.version}`")


@app.command("tensorboard")
def tensorboard_command(
    logdir: Optional[Path] = typer.Option(None, "--logdir", help="Directory of runs to show (default: DATA_DIR/runs)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(6006, "--port", min=0, max=65535, help="Port to serve on (0: any free port)."),
) -> None:
    """Serve TensorBoard for training runs (loss, learning rate, metrics, captioned samples)."""
    from capbot.settings import get_settings
    from training.tb import serve_tensorboard

    url, wait = serve_tensorboard(logdir or get_settings().runs_dir, host=host, port=port)
    typer.echo(f"TensorBoard at {url} (Ctrl+C to stop)")
    wait()
