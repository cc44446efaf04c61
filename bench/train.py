"""Fine-tuning throughput, side by side: `capbot train` against plain `Seq2SeqTrainer` on the same model and data.

Both start from the same model directory and read the same COCO-format images and captions from disk
(data pipeline included), for the same number of optimizer steps at the same batch size; samples/s is
steps x batch / wall time of the whole call, repeated and interleaved.

    python -m bench.train [--preset tiny] [--steps 30] [--batch 16] [--device cpu] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from bench.common import machine, print_table, save

log = logging.getLogger("bench")


def prepare(root: Path, preset: str, images: int = 256) -> tuple[Path, Path]:
    """A synthetic dataset and a new model of `preset` with a tokenizer trained on its captions."""
    from inference.model_init import init_model, read_captions
    from training.data.synthetic import generate_synthetic

    data_dir, model_dir = root / "data", root / f"model-{preset}"
    if not (data_dir / "annotations").is_dir():
        generate_synthetic(data_dir, n_train=images, n_val=8, n_test=8, seed=0, image_size=64 if preset == "tiny" else 224)
    if not (model_dir / "capbot.json").is_file():
        init_model(model_dir, preset=preset, captions=read_captions(data_dir / "annotations" / "captions_train.json"),
                   seed=0, overwrite=True)
    return data_dir, model_dir


def capbot_train(model_dir: Path, data_dir: Path, steps: int, batch: int, device: str) -> float:
    """Seconds for `capbot train`'s `train()` (no evaluation, no TensorBoard), start to finish."""
    from training.train import TrainArgs, train

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        train(TrainArgs(model=str(model_dir), data=str(data_dir), out=Path(out) / "model", run_dir=Path(out) / "run", val_split=None, steps=steps,
                        batch_size=batch, warmup_steps=1, log_every=steps, tensorboard=False, progress=False,
                        device=device, keep_checkpoints=1))
        return time.perf_counter() - started


def plain_trainer(model_dir: Path, data_dir: Path, steps: int, batch: int, device: str) -> float:
    """Seconds for what a user writes with transformers: a Dataset over the files, ViTImageProcessor,
    `Seq2SeqTrainer` (bf16 on a GPU that has it, as its docs suggest)."""
    import torch
    from PIL import Image
    from transformers import (AutoTokenizer, Seq2SeqTrainer, Seq2SeqTrainingArguments, ViTImageProcessor,
                              VisionEncoderDecoderModel)

    annotations = json.loads((data_dir / "annotations" / "captions_train.json").read_text())
    files = {image["id"]: data_dir / "train" / image["file_name"] for image in annotations["images"]}
    rows = [(files[a["image_id"]], a["caption"]) for a in annotations["annotations"]]
    processor = ViTImageProcessor.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = VisionEncoderDecoderModel.from_pretrained(model_dir)

    class Captions(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict:
            path, caption = rows[i]
            pixels = processor(images=Image.open(path).convert("RGB"), return_tensors="pt").pixel_values[0]
            labels = tokenizer(caption, max_length=31, truncation=True).input_ids + [tokenizer.eos_token_id]
            return {"pixel_values": pixels, "labels": labels}

    def collate(items: list[dict]) -> dict:
        width = max(len(item["labels"]) for item in items)
        labels = torch.full((len(items), width), -100, dtype=torch.long)
        for i, item in enumerate(items):
            labels[i, :len(item["labels"])] = torch.tensor(item["labels"])
        return {"pixel_values": torch.stack([item["pixel_values"] for item in items]), "labels": labels}

    bf16 = device != "cpu" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    with tempfile.TemporaryDirectory() as out:
        arguments = Seq2SeqTrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=5e-4, warmup_steps=1,
            logging_steps=steps, save_strategy="no", report_to=[], bf16=bf16, use_cpu=device == "cpu",
            dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True)
        trainer = Seq2SeqTrainer(model=model, args=arguments, train_dataset=Captions(), data_collator=collate)
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


def run(preset: str, steps: int, batch: int, device: str, repeats: int, root: Path) -> dict:
    data_dir, model_dir = prepare(root, preset)
    contenders = {"plain Seq2SeqTrainer": plain_trainer, "capbot train": capbot_train}
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for repeat in range(repeats):
        for name, fn in (list(contenders.items())[::-1] if repeat % 2 else contenders.items()):
            seconds[name].append(fn(model_dir, data_dir, steps, batch, device))
        log.info("repeat done", extra={"repeat": repeat + 1})
    rows = []
    base = steps * batch / min(seconds["plain Seq2SeqTrainer"])
    for name, values in seconds.items():
        best = steps * batch / min(values)
        rows.append({"path": name, "samples_per_s_best": round(best, 1),
                     "samples_per_s_median": round(steps * batch / sorted(values)[len(values) // 2], 1),
                     "speedup": round(best / base, 2)})
    return {"machine": machine(), "preset": preset, "steps": steps, "batch": batch, "device": device,
            "repeats": repeats, "results": rows}


def print_results(payload: dict) -> None:
    print_table(f"Fine-tuning, {payload['preset']} model, batch {payload['batch']}, {payload['steps']} steps, "
                f"{payload['device']}", ["path", "samples/s (best)", "samples/s (median)", "vs plain"],
                [[r["path"], r["samples_per_s_best"], r["samples_per_s_median"], f'{r["speedup"]}x']
                 for r in payload["results"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path("bench/.models/train"))
    parser.add_argument("--name", default="train", help="results file name under bench/results/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    payload = run(args.preset, args.steps, args.batch, args.device, args.repeats, args.root)
    print_results(payload)
    print(f"\nwritten: {save(args.name, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
