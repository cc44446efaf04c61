"""Model families capbot can caption with, and which one a model directory holds (its config.json says).

A family is a kind of model with its own engines (`inference.captioner.load_engine`), its own prompt and its
own way of building training labels: ViT+GPT-2 (transformers' `VisionEncoderDecoderModel`, the default),
BLIP, GIT, Florence-2 and SmolVLM (a chat-template VLM, transformers' Idefics3 classes). The family is read
from config.json's `model_type`, checked against its `architectures` where one `model_type` covers other
heads too (BLIP's question-answering and retrieval checkpoints). A model of any other architecture is
refused at load, in one line naming the families capbot has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from inference.hub import ModelLoadError

VISION_ENCODER_DECODER = "vision-encoder-decoder"
BLIP = "blip"
GIT = "git"
FLORENCE2 = "florence2"
SMOLVLM = "smolvlm"
AUTO = "auto"


@dataclass(frozen=True)
class Family:
    """One family: its name in specs and settings, how people call it, and the config.json it is read from."""

    name: str
    title: str  # for messages and docs
    model_types: tuple[str, ...]  # config.json model_type values of this family
    architectures: tuple[str, ...]  # the head classes capbot captions with (config.json `architectures`)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(VISION_ENCODER_DECODER, "ViT + GPT-2 (VisionEncoderDecoderModel)", ("vision-encoder-decoder",),
           ("VisionEncoderDecoderModel",)),
    Family(BLIP, "BLIP (BlipForConditionalGeneration)", ("blip",), ("BlipForConditionalGeneration",)),
    Family(GIT, "GIT (GitForCausalLM)", ("git",), ("GitForCausalLM",)),
    Family(FLORENCE2, "Florence-2 (Florence2ForConditionalGeneration)", ("florence2",),
           ("Florence2ForConditionalGeneration",)),
    # SmolVLM (v1: SmolVLM-256M/500M/Instruct) is transformers' Idefics3 architecture.
    Family(SMOLVLM, "SmolVLM (Idefics3ForConditionalGeneration)", ("idefics3",), ("Idefics3ForConditionalGeneration",)),
)}
_BY_MODEL_TYPE = {model_type: family for family in FAMILIES.values() for model_type in family.model_types}


def check_family(family: str) -> None:
    """Refuse a family name capbot does not have (a spec's `family`: `auto` or one of `FAMILIES`)."""
    if family != AUTO and family not in FAMILIES:
        raise ModelLoadError(f"unknown model family {family!r}; use auto or one of: {', '.join(FAMILIES)}",
                             reason="unknown_family")


def family_of(model_dir: Path, requested: str = AUTO) -> str:
    """The family of the model in `model_dir`, read from its config.json; a model of another architecture, or
    not of the `requested` family, is a `ModelLoadError` naming the supported families."""
    config = _config(model_dir)
    family = detect_family(config, where=str(model_dir))
    if requested not in (AUTO, family):
        raise ModelLoadError(f"{model_dir} holds a {family} model, not the {requested!r} family this captioner "
                             "is set to", reason="wrong_family")
    return family


def detect_family(config: dict, *, where: str = "the model") -> str:
    """The family name of a parsed config.json (see `family_of`)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise ModelLoadError(f"{where}: config.json names no model_type", reason="invalid")
    if model_type == FLORENCE2 and "auto_map" in config:
        raise ModelLoadError(f"{where} is a microsoft/Florence-2 checkpoint written for trust_remote_code, which "
                             "transformers 5 no longer runs; use its native conversion (florence-community/"
                             "Florence-2-base or -large, -ft for the fine-tuned ones)", reason="unsupported_family")
    if model_type == "smolvlm":
        raise ModelLoadError(f"{where} is a SmolVLM2 model, whose processor needs torchvision (not installed beside "
                             "capbot's torch); use a SmolVLM v1 checkpoint such as HuggingFaceTB/SmolVLM-256M-Instruct",
                             reason="unsupported_family")
    family = _BY_MODEL_TYPE.get(model_type)
    architectures = config.get("architectures") or []
    if family is None or (architectures and not set(architectures) & set(family.architectures)):
        what = f"{model_type} ({', '.join(architectures)})" if architectures else model_type
        raise ModelLoadError(f"{where} holds a {what} model; capbot captions with: "
                             f"{'; '.join(f.title for f in FAMILIES.values())}", reason="unsupported_family")
    return family.name


def _config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{model_dir} is not a complete model directory: no config.json "
                             "(build one with `capbot models init`)", reason="invalid") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", reason="invalid") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} is not a JSON object", reason="invalid")
    return config
