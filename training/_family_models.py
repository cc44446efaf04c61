"""TEMPORARY shim (issue 24, part B): `inference.family_models` is being written on branch issue-24a. Until that
branch is merged, this module holds the few lines training needs of it, under its names; once merged this file
is deleted and training imports `inference.family_models` directly. Nothing here is training's own logic."""

from __future__ import annotations

try:
    from inference.family_models import (  # noqa: F401
        SMOLVLM_DEFAULT_QUESTION, caption_prompt, caption_texts, load_model, load_processor, model_inputs, prompt_length,
    )
except ImportError:  # issue-24a not merged yet
    from pathlib import Path
    from typing import Any, Sequence

    from inference.families import BLIP, FLORENCE2, GIT, SMOLVLM, VISION_ENCODER_DECODER
    from inference.hub import load_pretrained

    SMOLVLM_DEFAULT_QUESTION = "Caption this image."
    _CLASSES = {BLIP: "BlipForConditionalGeneration", GIT: "GitForCausalLM",
                FLORENCE2: "Florence2ForConditionalGeneration", SMOLVLM: "Idefics3ForConditionalGeneration"}

    def load_model(model_dir: Path, family: str, *, dtype: Any = None) -> Any:
        import transformers

        extra = {} if dtype is None else {"dtype": dtype}
        model = load_pretrained(getattr(transformers, _CLASSES[family]).from_pretrained, model_dir, "model", **extra)
        model.generation_config.max_length = None
        return model.eval()

    def load_processor(model_dir: Path, family: str) -> Any:
        from transformers import AutoProcessor

        return load_pretrained(AutoProcessor.from_pretrained, model_dir, "processor")

    def caption_prompt(family: str, processor: Any, prompt: str | None = None) -> str | None:
        if family == FLORENCE2:
            return prompt or "<CAPTION>"
        if family == SMOLVLM:
            messages = [{"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": prompt or SMOLVLM_DEFAULT_QUESTION}]}]
            return processor.apply_chat_template(messages, add_generation_prompt=True)
        return None

    def model_inputs(family: str, processor: Any, images: Sequence[Any], prompt: str | None = None) -> dict[str, Any]:
        images = list(images)
        if family in (VISION_ENCODER_DECODER, BLIP, GIT):
            image_processor = getattr(processor, "image_processor", processor)
            return {"pixel_values": image_processor(images=images, return_tensors="pt").pixel_values}
        text = prompt if prompt is not None else caption_prompt(family, processor)
        if family == FLORENCE2:
            return dict(processor(text=[text] * len(images), images=images, return_tensors="pt"))
        return dict(processor(text=[text] * len(images), images=[[image] for image in images], return_tensors="pt",
                              padding=True, padding_side="left"))

    def prompt_length(family: str, inputs: dict[str, Any]) -> int:
        return int(inputs["input_ids"].shape[1]) if family == SMOLVLM else 0

    def caption_texts(family: str, processor: Any, rows: Any) -> list[str]:
        tokenizer = getattr(processor, "tokenizer", processor)
        return [" ".join(text.split()) for text in tokenizer.batch_decode(rows, skip_special_tokens=True)]
