"""Named architectures for new captioning models: `tiny` for tests and demos, `base` for real training.

A preset is only numbers; `encoder_config` / `decoder_config` turn it into transformers configs. The
training engineer may tune `tiny` so that CPU training learns the synthetic shapes quickly.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import GPT2Config, ViTConfig

from storage.errors import UserError


@dataclass(frozen=True)
class Preset:
    """The architecture of a ViT encoder + GPT-2 decoder pair."""

    name: str
    image_size: int  # square input side in pixels; the image processor resizes to this
    patch_size: int  # ViT patch side; (image_size / patch_size)^2 patches per image
    encoder_hidden: int
    encoder_layers: int
    encoder_heads: int
    encoder_intermediate: int  # ViT MLP width, usually 4 x hidden
    decoder_embd: int
    decoder_layers: int
    decoder_heads: int
    decoder_positions: int  # longest caption in tokens the decoder can read
    vocab_size: int  # target size when a new tokenizer is trained; a given tokenizer sets its own
    dropout: float = 0.1  # GPT-2 decoder dropout (residual, embedding, attention)


PRESETS: dict[str, Preset] = {
    # Small enough to train on 2 CPU cores in minutes: 16 patches of 16x16, ~1M parameters. Tuned on
    # synthetic shapes (training): 16x16 patches and no dropout learned shapes ~2x faster than 8x8 + 0.1.
    "tiny": Preset(
        name="tiny", image_size=64, patch_size=16,
        encoder_hidden=128, encoder_layers=2, encoder_heads=4, encoder_intermediate=256,
        decoder_embd=128, decoder_layers=2, decoder_heads=4, decoder_positions=64,
        vocab_size=600, dropout=0.0,
    ),
    # ViT-B/16 at 224 + GPT-2 124M: the architecture of nlpconnect/vit-gpt2-image-captioning.
    "base": Preset(
        name="base", image_size=224, patch_size=16,
        encoder_hidden=768, encoder_layers=12, encoder_heads=12, encoder_intermediate=3072,
        decoder_embd=768, decoder_layers=12, decoder_heads=12, decoder_positions=1024,
        vocab_size=50257,
    ),
}


class UnknownPresetError(UserError):
    """The preset name is not one of `PRESETS`."""


def get_preset(name: str) -> Preset:
    """Look a preset up by name, with a message listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(
            f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}", reason="unknown_preset"
        ) from None


def encoder_config(preset: Preset) -> ViTConfig:
    """A ViT encoder config for the preset (random weights when a model is built from it)."""
    return ViTConfig(
        image_size=preset.image_size,
        patch_size=preset.patch_size,
        num_channels=3,
        hidden_size=preset.encoder_hidden,
        num_hidden_layers=preset.encoder_layers,
        num_attention_heads=preset.encoder_heads,
        intermediate_size=preset.encoder_intermediate,
    )


def decoder_config(preset: Preset, *, vocab_size: int, bos_token_id: int, eos_token_id: int) -> GPT2Config:
    """A GPT-2 decoder config that can attend to the encoder (see `is_decoder`/`add_cross_attention`)."""
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=preset.decoder_positions,
        n_embd=preset.decoder_embd,
        n_layer=preset.decoder_layers,
        n_head=preset.decoder_heads,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        resid_pdrop=preset.dropout,
        embd_pdrop=preset.dropout,
        attn_pdrop=preset.dropout,
        # Both flags are needed: without them the decoder ignores the image (no cross-attention layers)
        # and a later from_pretrained of the decoder alone cannot be combined with an encoder.
        is_decoder=True,
        add_cross_attention=True,
    )
