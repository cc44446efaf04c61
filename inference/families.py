"""Model families capbot can caption with, and which one a model directory holds (its config.json says).

A family is a kind of model with its own engines (`inference.captioner.load_engine`): today ViT+GPT-2
(transformers' `VisionEncoderDecoderModel`), with an exact engine (plain `generate`) and the CPU fast path.
A model of any other architecture is refused at load, in one line naming the families capbot has.
"""

from __future__ import annotations

import json
from pathlib import Path

from inference.hub import ModelLoadError

VISION_ENCODER_DECODER = "vision-encoder-decoder"
# family (config.json's model_type) -> what it is, for messages and docs
FAMILIES = {VISION_ENCODER_DECODER: "ViT + GPT-2, transformers' VisionEncoderDecoderModel"}
AUTO = "auto"


def check_family(family: str) -> None:
    """Refuse a family name capbot does not have (a spec's `family`: `auto` or one of `FAMILIES`)."""
    if family != AUTO and family not in FAMILIES:
        raise ModelLoadError(f"unknown model family {family!r}; use auto or one of: {', '.join(FAMILIES)}",
                             reason="unknown_family")


def family_of(model_dir: Path, requested: str = AUTO) -> str:
    """The family of the model in `model_dir`, read from its config.json's `model_type`; a family capbot
    does not have, or not the `requested` one, is a `ModelLoadError` naming the supported families."""
    model_type = _model_type(model_dir)
    if model_type not in FAMILIES:
        supported = "; ".join(f"{name} ({what})" for name, what in FAMILIES.items())
        raise ModelLoadError(f"{model_dir} holds a {model_type!r} model; capbot captions with: {supported}",
                             reason="unsupported_family")
    if requested not in (AUTO, model_type):
        raise ModelLoadError(f"{model_dir} holds a {model_type!r} model, not the {requested!r} family this "
                             "captioner is set to", reason="wrong_family")
    return model_type


def _model_type(model_dir: Path) -> str:
    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{model_dir} is not a complete model directory: no config.json "
                             "(build one with `capbot models init`)", reason="invalid") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", reason="invalid") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise ModelLoadError(f"{path} names no model_type", reason="invalid")
    return model_type
