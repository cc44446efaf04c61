"""Tiny random models of every captioning family, saved the way a plain transformers user saves them.

Each builder makes a model from its family's config class (random weights), a tokenizer trained here with
`tokenizers` on caption text, and the family's real processor class, then writes them with `save_pretrained`
and nothing of capbot's. They are the offline stand-ins for the hub checkpoints a team would pick:

| family                   | stands in for                         | model class                        | processor           |
|--------------------------|---------------------------------------|------------------------------------|---------------------|
| `vision-encoder-decoder` | nlpconnect/vit-gpt2-image-captioning  | VisionEncoderDecoderModel          | ViT image processor + GPT-2-style BPE |
| `blip`                   | Salesforce/blip-image-captioning-base | BlipForConditionalGeneration       | BlipProcessor       |
| `git`                    | microsoft/git-base                    | GitForCausalLM                     | GitProcessor        |
| `florence2`              | florence-community/Florence-2-base    | Florence2ForConditionalGeneration  | Florence2Processor  |
| `smolvlm`                | HuggingFaceTB/SmolVLM-256M-Instruct   | Idefics3ForConditionalGeneration   | Idefics3Processor (chat template) |

SmolVLM-256M-Instruct is an `idefics3` checkpoint. The SmolVLM2 checkpoints (`model_type: smolvlm`) use
`SmolVLMProcessor`, which in transformers 5.24 cannot be built without torchvision (its `video_processor`
argument checks against the video processor mapping, a dummy without torchvision), so no directory of that kind
is made here.

Two file layouts, so both kinds of directory users hold are covered:
- `layout="processor"`: what transformers 5 writes (`processor.save_pretrained`: processor_config.json,
  chat_template.jinja) with `model.safetensors`;
- `layout="hub"`: what the hub repositories of these models hold (the image processor's own
  preprocessor_config.json, the tokenizer files, chat_template.json), with `weights="bin"` for a
  `pytorch_model.bin` of the kind older transformers wrote.

`model_card_captions` captions images the way each model card does, with plain transformers: the
reference an engine's exact path must reproduce.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import torch
from safetensors.torch import load_file
from tokenizers import ByteLevelBPETokenizer, normalizers, pre_tokenizers
from transformers import (
    AutoImageProcessor,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    BartTokenizer,
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
    CLIPImageProcessorPil,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
    GitConfig,
    GitForCausalLM,
    GitProcessor,
    GPT2Tokenizer,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    VisionEncoderDecoderModel,
)

FAMILIES = ("vision-encoder-decoder", "blip", "git", "florence2", "smolvlm")

Weights = Literal["safetensors", "bin"]
Layout = Literal["processor", "hub"]

FLORENCE_TASK = "<CAPTION>"
# SmolVLM-256M-Instruct's chat template (its chat_template.json), and the card's way to ask for a caption.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM_QUESTION = "Caption this image."
SMOLVLM_IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)
]


@dataclass(frozen=True)
class TinySize:
    """The shape of a tiny model: small enough to build in well under a second and generate in milliseconds."""

    image_size: int = 64  # the synthetic dataset's image side
    patch_size: int = 16  # 16 patches of a 64 px image, as the VED `tiny` preset
    width: int = 64  # hidden size of every transformer (Florence-2's last vision stage too)
    layers: int = 2
    heads: int = 2
    wordpiece_vocab: int = 200  # BLIP and GIT (BERT's WordPiece scheme)
    bpe_vocab: int = 400  # VED, Florence-2 and SmolVLM (byte-level BPE)
    positions: int = 64  # longest text in tokens (SmolVLM's prompt holds its image tokens too: 1024 there)


@dataclass(frozen=True)
class BuiltFamily:
    """A saved tiny model and what a test needs to know about it."""

    family: str
    path: Path
    model_class: str  # what AutoModelForImageTextToText.from_pretrained(path) returns
    processor_class: str  # what AutoProcessor.from_pretrained(path) returns (VED: AutoImageProcessor, it has no processor)
    weights: Weights
    layout: Layout


def build_family_model(
    family: str,
    out_dir: str | Path,
    captions: Iterable[str],
    *,
    size: TinySize = TinySize(),
    weights: Weights = "safetensors",
    layout: Layout = "processor",
    seed: int = 0,
) -> BuiltFamily:
    """Build a tiny random `family` model with a tokenizer trained on `captions` and save it to `out_dir`."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    if layout == "processor" and weights == "bin":
        raise ValueError("transformers 5 saves safetensors only; a .bin directory has the hub layout")
    texts = [c.strip() for c in captions if c and c.strip()]
    if not texts:
        raise ValueError("no caption text to train a tokenizer on")
    torch.manual_seed(seed)
    model, processor, model_class = _BUILDERS[family](texts, size)
    out = Path(out_dir)
    _save(model.eval(), processor, out, weights=weights, layout=layout)
    parts = processor.image_processor if isinstance(processor, _ImageAndTokenizer) else processor
    return BuiltFamily(family, out, model_class, type(parts).__name__, weights, layout)


def synthetic_captions(dataset_dir: str | Path, split: str = "train") -> list[str]:
    """The reference captions of a synthetic dataset split (`training.data.synthetic.generate_synthetic`)."""
    path = Path(dataset_dir) / "annotations" / f"captions_{split}.json"
    return [a["caption"] for a in json.loads(path.read_text())["annotations"]]


def load_family_model(path: str | Path) -> tuple[Any, Any]:
    """(model, processor) as a user loads them: the Auto classes, from disk. A ViT+GPT-2 directory has no
    processor (AutoProcessor returns its tokenizer): its card loads the image processor and the tokenizer."""
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    if model.config.model_type == "vision-encoder-decoder":
        return model, _ImageAndTokenizer(AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path))
    return model, AutoProcessor.from_pretrained(path)


def model_card_captions(family: str, model: Any, processor: Any, images: Sequence[Any], **generate_kwargs) -> list[str]:
    """Caption `images` with plain transformers, as the family's model card does (greedy unless told)."""
    inputs = caption_inputs(family, processor, images)
    with torch.no_grad():
        out = model.generate(**inputs, **generate_kwargs)
    # Florence-2's card decodes with special tokens and calls post_process_generation, which for <CAPTION>
    # only removes <s> and </s> (a shorter row of a batch would keep its <pad>s): skipping special tokens is
    # the same for one image and right for a batch.
    if family == "smolvlm":  # a decoder-only chat model: its output starts with the whole prompt
        out = out[:, inputs["input_ids"].shape[1]:]
    return [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]


def caption_inputs(family: str, processor: Any, images: Sequence[Any]) -> dict[str, torch.Tensor]:
    """The model inputs each family's card builds to caption `images` (no text for VED, BLIP and GIT)."""
    images = list(images)
    if family in ("vision-encoder-decoder", "blip", "git"):
        return {"pixel_values": processor(images=images, return_tensors="pt").pixel_values}
    if family == "florence2":
        return dict(processor(text=[FLORENCE_TASK] * len(images), images=images, return_tensors="pt"))
    if family == "smolvlm":
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": SMOLVLM_QUESTION}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        # Pictures of other shapes split into other numbers of tiles, so prompts differ in length: a decoder-only
        # model continues each row from its last token, so rows are padded on the left.
        return dict(processor(text=[prompt] * len(images), images=[[i] for i in images], return_tensors="pt",
                              padding=True, padding_side="left"))
    raise ValueError(f"unknown family {family!r}")


# --- tokenizers, trained here on caption text ---
def _wordpiece(texts: list[str], size: TinySize) -> dict[str, int]:
    """A lower-case WordPiece vocabulary in BERT's scheme (bert-base-uncased's special tokens first): the most
    frequent words whole, then every character alone and as a `##` continuation, so any word still encodes.

    Words are counted after the `tokenizers` BERT normaliser and pre-tokenizer. `tokenizers`' WordPiece trainer
    is not used: its vocabulary changes from one process to the next (hash order), so seeded runs would differ.
    """
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    pieces = [*chars, *(f"##{c}" for c in chars)]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    room = max(size.wordpiece_vocab - len(specials) - len(pieces), 0)
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if len(w) > 1][:room]
    return {token: index for index, token in enumerate([*specials, *pieces, *words])}


def _byte_level_bpe(texts: list[str], size: TinySize, specials: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges (GPT-2's scheme, as BART and SmolLM2 use), specials first."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=size.bpe_vocab, special_tokens=list(specials), show_progress=False)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


# --- one builder per family: (model, processor, expected model class) ---
def _vision_encoder_decoder(texts: list[str], size: TinySize):
    # The repository's own recipe for this family (`capbot models init --preset tiny`), minus capbot.json.
    from dataclasses import replace

    from transformers import GPT2LMHeadModel, ViTModel

    from inference.model_init import train_tokenizer
    from inference.modeldir import make_image_processor, set_token_ids
    from inference.presets import decoder_config, encoder_config, get_preset

    preset = replace(get_preset("tiny"), image_size=size.image_size, patch_size=size.patch_size,
                     encoder_hidden=size.width, encoder_layers=size.layers, encoder_heads=size.heads,
                     encoder_intermediate=2 * size.width, decoder_embd=size.width, decoder_layers=size.layers,
                     decoder_heads=size.heads, decoder_positions=size.positions, vocab_size=size.bpe_vocab)
    tokenizer = train_tokenizer(texts, preset.vocab_size, max_length=preset.decoder_positions)
    decoder = GPT2LMHeadModel(decoder_config(preset, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                             eos_token_id=tokenizer.eos_token_id))
    model = VisionEncoderDecoderModel(encoder=ViTModel(encoder_config(preset)), decoder=decoder)
    set_token_ids(model, tokenizer)
    return model, _ImageAndTokenizer(make_image_processor(size.image_size), tokenizer), "VisionEncoderDecoderModel"


def _blip(texts: list[str], size: TinySize):
    # blip-image-captioning-base: bert-base-uncased plus [DEC] (decoding starts from it) and [ENC].
    tokenizer = BertTokenizer(vocab=_wordpiece(texts, size), model_max_length=size.positions)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    image_processor = BlipImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=size.width, encoder_hidden_size=size.width,
            intermediate_size=2 * size.width, num_hidden_layers=size.layers, num_attention_heads=size.heads,
            max_position_embeddings=size.positions, bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id,
            eos_token_id=tokenizer.sep_token_id,  # generate stops at [SEP]; the hub config's eos (2) is unused
        ),
        vision_config=dict(hidden_size=size.width, intermediate_size=2 * size.width, num_hidden_layers=size.layers,
                           num_attention_heads=size.heads, image_size=size.image_size, patch_size=size.patch_size),
        projection_dim=size.width, image_text_hidden_size=size.width,
    )
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return BlipForConditionalGeneration(config), processor, "BlipForConditionalGeneration"


def _git(texts: list[str], size: TinySize):
    # git-base: bert-base-uncased; decoding starts from [CLS] and stops at [SEP]; CLIP preprocessing.
    tokenizer = BertTokenizer(vocab=_wordpiece(texts, size), model_max_length=size.positions)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size.image_size},
                                            crop_size={"height": size.image_size, "width": size.image_size})
    config = GitConfig(
        vision_config=dict(hidden_size=size.width, intermediate_size=2 * size.width, num_hidden_layers=size.layers,
                           num_attention_heads=size.heads, image_size=size.image_size, patch_size=size.patch_size),
        vocab_size=len(tokenizer), hidden_size=size.width, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, intermediate_size=2 * size.width, max_position_embeddings=size.positions,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GitForCausalLM(config), GitProcessor(image_processor=image_processor, tokenizer=tokenizer), "GitForCausalLM"


def _florence2(texts: list[str], size: TinySize):
    # Florence-2-base: BART's byte-level BPE with an <image> token, a DaViT vision tower, a BART text model.
    # The prompt ("What does the image describe?") is part of the encoder's input: train the BPE on it too.
    vocab, merges = _byte_level_bpe([*texts, "What does the image describe?"], size,
                                    ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, model_max_length=size.positions,
                              extra_special_tokens={"image_token": "<image>"})
    # Three DaViT stages of strides 4, 2, 2 (the real four end at 32): a 64 px image gives 4 x 4 image tokens.
    strides = (4, 2, 2)
    grid = size.image_size // (strides[0] * strides[1] * strides[2])
    vision = dict(depths=[1, 1, 1], patch_size=[7, 3, 3], patch_stride=list(strides), patch_padding=[3, 1, 1],
                  patch_prenorm=[False, True, True], embed_dim=[size.width // 4, size.width // 2, size.width],
                  num_heads=[1, 2, size.heads], num_groups=[1, 2, size.heads], window_size=2,
                  projection_dim=size.width, drop_path_rate=0.0)
    text = dict(vocab_size=len(tokenizer), d_model=size.width, encoder_layers=size.layers, decoder_layers=size.layers,
                encoder_attention_heads=size.heads, decoder_attention_heads=size.heads,
                encoder_ffn_dim=2 * size.width, decoder_ffn_dim=2 * size.width, max_position_embeddings=size.positions,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.eos_token_id)
    config = Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)
    image_processor = CLIPImageProcessorPil(
        size={"height": size.image_size, "width": size.image_size}, do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        image_seq_length=grid * grid + 1,  # the grid plus one temporal token (Florence-2-base: 24 x 24 + 1 = 577)
    )
    # post_process_generation parses a task's text only when its parser is configured ("pure_text" for captions).
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                                   post_processor_config={"pure_text": {}})
    return Florence2ForConditionalGeneration(config), processor, "Florence2ForConditionalGeneration"


def _smolvlm(texts: list[str], size: TinySize):
    # SmolVLM-256M-Instruct: SmolLM2's byte-level BPE (GPT2Tokenizer) plus image and chat tokens, a SigLIP
    # tower on square tiles, pixel shuffle, a Llama text model; the prompt goes through the chat template.
    chat_text = ["User: Assistant:", SMOLVLM_QUESTION]
    vocab, merges = _byte_level_bpe([*texts, *chat_text], size, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, unk_token="<|endoftext|>", bos_token="<|im_start|>",
                              eos_token="<end_of_utterance>", pad_token="<|im_end|>", model_max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": SMOLVLM_IMAGE_TOKENS})
    tile, scale_factor = size.image_size // 2, 2  # the card's default splits a picture into tiles plus one global view
    patch = size.patch_size // 2
    image_seq_len = (tile // patch) ** 2 // scale_factor**2
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile})
    text = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=size.width, intermediate_size=2 * size.width,
                num_hidden_layers=size.layers, num_attention_heads=2 * size.heads, num_key_value_heads=size.heads,
                head_dim=size.width // (2 * size.heads), max_position_embeddings=1024, rms_norm_eps=1e-5,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=size.width, intermediate_size=2 * size.width, num_hidden_layers=size.layers,
                  num_attention_heads=size.heads, image_size=tile, patch_size=patch)
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=scale_factor,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
                                  chat_template=SMOLVLM_CHAT_TEMPLATE)
    return Idefics3ForConditionalGeneration(config), processor, "Idefics3ForConditionalGeneration"


_BUILDERS = {
    "vision-encoder-decoder": _vision_encoder_decoder,
    "blip": _blip,
    "git": _git,
    "florence2": _florence2,
    "smolvlm": _smolvlm,
}


class _ImageAndTokenizer:
    """A ViT+GPT-2 directory has no processor class: its image processor and tokenizer live side by side."""

    def __init__(self, image_processor: Any, tokenizer: Any) -> None:
        self.image_processor, self.tokenizer = image_processor, tokenizer

    def __call__(self, images: Any, **kwargs: Any) -> Any:
        return self.image_processor(images=images, **kwargs)

    def batch_decode(self, ids: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(ids, **kwargs)

    def save_pretrained(self, out: Path) -> None:
        self.image_processor.save_pretrained(out)
        self.tokenizer.save_pretrained(out)


# --- saving ---
def _save(model: Any, processor: Any, out: Path, *, weights: Weights, layout: Layout) -> None:
    model.save_pretrained(out)
    if weights == "bin":
        # The same tensors under the same names in torch's pickle format, as transformers 4 wrote them by default.
        # Not `model.state_dict()`: transformers 5 renames some modules inside (ViT's attention, for one) and
        # maps the names back when it saves, so only the saved file has the names a checkpoint carries.
        safetensors = out / "model.safetensors"
        torch.save(load_file(safetensors), out / "pytorch_model.bin")
        safetensors.unlink()
    if layout == "processor" or isinstance(processor, _ImageAndTokenizer):
        processor.save_pretrained(out)
        return
    # The hub repositories' layout: each part's own files, the chat template in its JSON file.
    processor.image_processor.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    chat_template = getattr(processor, "chat_template", None)
    if chat_template:
        (out / "chat_template.json").write_text(json.dumps({"chat_template": chat_template}, indent=2))
    processor_class = {"processor_class": type(processor).__name__}
    preprocessor = out / "preprocessor_config.json"
    preprocessor.write_text(json.dumps({**json.loads(preprocessor.read_text()), **processor_class}, indent=2))
    if hasattr(processor, "image_seq_len"):  # SmolVLM-256M-Instruct's flat processor_config.json
        (out / "processor_config.json").write_text(json.dumps({"image_seq_len": processor.image_seq_len, **processor_class}))
