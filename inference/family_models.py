"""The model, processor and caption prompt of every family, the one way serving, training and import read
them: `load_model`, `load_processor`, `caption_prompt`, `model_inputs` and `caption_texts`.

A family's model card is the reference (tests/families.py `model_card_captions`): the same processor call,
the same prompt, the same decoding. What each family asks for a caption:
- BLIP and GIT: the image alone; decoding starts from the model's own start token.
- Florence-2: a task token, `<CAPTION>` (or `<DETAILED_CAPTION>`, `<MORE_DETAILED_CAPTION>`), which the
  processor turns into its question ("What does the image describe?") for the encoder.
- SmolVLM (Idefics3): a question in the processor's chat template, the image as a chat turn's content.
  A decoder-only model returns the prompt before the answer, so rows are padded on the left (each continues
  from its last token) and the prompt's columns are cut off before decoding (`prompt_length`).

A caption is decoded without special tokens and without the prompt, so it never holds the question, a task
token or chat-template text (`caption_texts`). ViT+GPT-2 (`vision-encoder-decoder`) keeps its own loader,
`inference.ved`; `load_model` hands it on there so one call loads a model of any family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from inference.families import BLIP, FLORENCE2, GIT, SMOLVLM, VISION_ENCODER_DECODER
from inference.hub import ModelLoadError, load_pretrained

# The head class each family captions with (`inference.families.FAMILIES`' architectures), by name so this
# module imports without transformers' models.
MODEL_CLASSES = {
    BLIP: "BlipForConditionalGeneration",
    GIT: "GitForCausalLM",
    FLORENCE2: "Florence2ForConditionalGeneration",
    SMOLVLM: "Idefics3ForConditionalGeneration",
}
FLORENCE_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")  # short to long captions
FLORENCE_DEFAULT_TASK = "<CAPTION>"
SMOLVLM_DEFAULT_QUESTION = "Caption this image."
PROMPTED = (FLORENCE2, SMOLVLM)  # the families whose caption depends on a prompt


def load_model(model_dir: Path, family: str, *, dtype: Any = None) -> Any:
    """The captioning model of `family` in `model_dir` (eval mode, `.bin` or safetensors), in `dtype` (a torch
    dtype; None: as saved), with a generation config that holds no `max_length` (captions are bounded by
    `max_new_tokens`, as `inference.ved.generation_config` explains)."""
    if family == VISION_ENCODER_DECODER:
        from inference import ved

        return ved.load_model(model_dir, dtype=dtype)
    model_class = _model_class(family)
    extra = {} if dtype is None else {"dtype": dtype}
    model = load_pretrained(model_class.from_pretrained, model_dir, "model", **extra)
    model.generation_config.max_length = None
    return model.eval()


def load_processor(model_dir: Path, family: str) -> Any:
    """The family's own processor (image processor and tokenizer, SmolVLM's chat template), from either file
    layout: transformers 5's processor_config.json or the hub's preprocessor_config.json and tokenizer files."""
    if family == VISION_ENCODER_DECODER:
        raise ModelLoadError("a ViT+GPT-2 model has no processor: load its image processor and tokenizer with "
                             "inference.ved", reason="invalid")
    _model_class(family)  # an unknown family is refused before anything is read
    from transformers import AutoProcessor

    processor = load_pretrained(AutoProcessor.from_pretrained, model_dir, "processor")
    if family == SMOLVLM and not getattr(processor, "chat_template", None):
        raise ModelLoadError(f"{model_dir} has no chat template (chat_template.jinja or chat_template.json), which "
                             "a SmolVLM model needs for its prompt", reason="invalid")
    return processor


def caption_prompt(family: str, processor: Any, prompt: str | None = None) -> str | None:
    """The text the family's processor takes beside the image to ask for a caption; None for BLIP, GIT and
    ViT+GPT-2, which take none. `prompt` chooses: for Florence-2 a task token of `FLORENCE_TASKS` (default
    `<CAPTION>`), for SmolVLM the question (default "Caption this image."), which goes through the processor's
    chat template here. A prompt for a family without one, or an unknown Florence-2 task, is refused."""
    if family == FLORENCE2:
        task = prompt or FLORENCE_DEFAULT_TASK
        if task not in FLORENCE_TASKS:
            raise ModelLoadError(f"Florence-2 captions with one of the task prompts {', '.join(FLORENCE_TASKS)}, "
                                 f"not {task!r}", reason="bad_prompt")
        return task
    if family == SMOLVLM:
        question = (prompt or SMOLVLM_DEFAULT_QUESTION).strip()
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    if prompt:
        raise ModelLoadError(f"a {family} model captions from the image alone and takes no prompt "
                             f"(prompts are for {' and '.join(PROMPTED)})", reason="bad_prompt")
    return None


def model_inputs(family: str, processor: Any, images: Sequence[Any], prompt: str | None = None) -> dict[str, Any]:
    """The model's inputs (tensors) to caption decoded RGB `images`, as the family's model card builds them.
    `prompt` is `caption_prompt`'s text (None: the family's default prompt)."""
    images = list(images)
    if family in (VISION_ENCODER_DECODER, BLIP, GIT):
        if prompt:
            caption_prompt(family, processor, prompt)  # refuses it
        image_processor = getattr(processor, "image_processor", processor)
        return {"pixel_values": image_processor(images=images, return_tensors="pt").pixel_values}
    text = prompt if prompt is not None else caption_prompt(family, processor)
    if family == FLORENCE2:
        return dict(processor(text=[text] * len(images), images=images, return_tensors="pt"))
    if family == SMOLVLM:
        # Pictures of other shapes split into other numbers of tiles, so prompts differ in length: a
        # decoder-only model continues each row from its last token, so rows are padded on the left.
        return dict(processor(text=[text] * len(images), images=[[image] for image in images], return_tensors="pt",
                              padding=True, padding_side="left"))
    raise ModelLoadError(f"unknown model family {family!r}", reason="unknown_family")


def prompt_length(family: str, inputs: dict[str, Any]) -> int:
    """How many leading columns of `generate`'s output are the prompt (a decoder-only chat model returns it
    before its answer); 0 where the output is the caption's own tokens (from the decoder's start token)."""
    return int(inputs["input_ids"].shape[1]) if family == SMOLVLM else 0


def caption_texts(family: str, processor: Any, rows: Any) -> list[str]:
    """Caption texts of generated rows (prompt columns already cut, `prompt_length`): special tokens left out
    (start, end, padding, image and chat-turn tokens), whitespace runs made one space, ends stripped."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return [" ".join(text.split()) for text in tokenizer.batch_decode(rows, skip_special_tokens=True)]


def end_token_ids(family: str, model: Any) -> set[int]:
    """The token ids that end a caption under `generate` (BLIP stops at its text config's [SEP], which its
    `generate` passes on; the others at the generation config's end tokens)."""
    if family == BLIP:
        return {model.config.text_config.sep_token_id}
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.get_text_config().eos_token_id
    return set(eos) if isinstance(eos, (list, tuple)) else {eos}


def _model_class(family: str) -> Any:
    name = MODEL_CLASSES.get(family)
    if name is None:
        known = ", ".join([VISION_ENCODER_DECODER, *MODEL_CLASSES])
        raise ModelLoadError(f"unknown model family {family!r}; one of: {known}", reason="unknown_family")
    import transformers

    return getattr(transformers, name)
