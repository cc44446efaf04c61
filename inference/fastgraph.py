"""The fast path's two graphs, written over a loaded `VisionEncoderDecoderModel`'s own modules.

`generate` recomputes work a captioner does not need and pays Python overhead on every token. The fast
path splits the model into two pure functions that export to ONNX (CPU) or run under CUDA graphs (GPU):

- `EncoderGraph`: pixels -> the cross-attention keys and values of every decoder layer, computed once
  per image (generate's cache computes them on the first step, then carries them per beam).
- `DecoderStep`: one token per sequence + the self-attention cache -> next-token log-probabilities and
  the grown cache. The cross-attention keys/values stay one copy per image: the beams of an image share
  them (a query of shape beams x heads attends to the image's keys), so beam search reads 1/beams of the
  bytes it would read with one copy per beam.

Shapes: L layers, B images, N = B x beams sequences, H heads, S image tokens, D head size, P cached tokens.
cross_kv is (L, 2, B, H, S, D); past and present are (L, 2, N, H, P, D) and (L, 2, N, H, P + 1, D).
Every sequence in a step is at the same position (they advance together), so the position is P.
The modules reuse the model's layers (LayerNorms, Conv1D projections, MLPs) so the arithmetic is the
model's own; only the attention plumbing is rewritten.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def attention_scaling(config: Any, layer_idx: int) -> float:
    """GPT-2's attention score scale for one layer, as `GPT2Attention` computes it."""
    scaling = 1.0
    if config.scale_attn_weights:
        scaling = (config.hidden_size // config.num_attention_heads) ** -0.5
    if config.scale_attn_by_inverse_layer_idx:
        scaling /= float(layer_idx + 1)
    return scaling


class EncoderGraph(nn.Module):
    """pixel_values (B, C, H, W) -> cross_kv (L, 2, B, heads, S, D)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.project = _encoder_projection(model)
        self.blocks = model.decoder.transformer.h
        self.heads = model.decoder.config.num_attention_heads

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(pixel_values=pixel_values).last_hidden_state
        if self.project is not None:
            hidden = self.project(hidden)
        batch, tokens, width = hidden.shape
        layers = []
        for block in self.blocks:
            keys, values = block.crossattention.c_attn(hidden).split(width, dim=2)
            layers.append(torch.stack([_heads(keys, self.heads), _heads(values, self.heads)]))
        return torch.stack(layers)


class DecoderStep(nn.Module):
    """(input_ids (N,), past (L, 2, N, H, P, D), cross_kv (L, 2, B, H, S, D)) -> (logprobs (N, V), present)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        decoder = model.decoder
        self.transformer = decoder.transformer
        self.lm_head = decoder.lm_head
        self.heads = decoder.config.num_attention_heads
        self.scales = [attention_scaling(decoder.config, i) for i in range(len(self.transformer.h))]

    def forward(self, input_ids: torch.Tensor, past: torch.Tensor, cross_kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        position = past.shape[4]
        hidden = self.transformer.wte(input_ids) + self.transformer.wpe.weight[position]  # (N, width)
        presents = []
        for i, block in enumerate(self.transformer.h):
            attended, present = self._self_attention(block, block.ln_1(hidden), past[i], self.scales[i])
            hidden = hidden + attended
            hidden = hidden + self._cross_attention(block, block.ln_cross_attn(hidden), cross_kv[i], self.scales[i])
            hidden = hidden + block.mlp(block.ln_2(hidden))
            presents.append(present)
        logits = self.lm_head(self.transformer.ln_f(hidden))
        return torch.log_softmax(logits.float(), dim=-1), torch.stack(presents)

    def _self_attention(self, block: Any, hidden: torch.Tensor, past: torch.Tensor, scale: float):
        attn = block.attn
        width = hidden.shape[-1]
        query, key, value = attn.c_attn(hidden).split(width, dim=-1)  # each (N, width)
        query, key, value = (_heads(t[:, None, :], self.heads) for t in (query, key, value))  # (N, H, 1, D)
        keys = torch.cat([past[0], key], dim=2)
        values = torch.cat([past[1], value], dim=2)
        weights = torch.softmax(torch.matmul(query, keys.transpose(-1, -2)) * scale, dim=-1)
        out = torch.matmul(weights, values)  # (N, H, 1, D)
        return attn.c_proj(out.reshape(out.shape[0], width)), torch.stack([keys, values])

    def _cross_attention(self, block: Any, hidden: torch.Tensor, cross: torch.Tensor, scale: float) -> torch.Tensor:
        attn = block.crossattention
        width = hidden.shape[-1]
        images = cross.shape[1]
        # (N, width) -> (B, beams, H, D) -> (B, H, beams, D): the beams of an image query its keys together.
        query = attn.q_attn(hidden).reshape(images, -1, self.heads, width // self.heads).transpose(1, 2)
        weights = torch.softmax(torch.matmul(query, cross[0].transpose(-1, -2)) * scale, dim=-1)
        out = torch.matmul(weights, cross[1]).transpose(1, 2)  # (B, beams, H, D)
        return attn.c_proj(out.reshape(-1, width))


def _heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, width) -> (batch, heads, tokens, width / heads)."""
    batch, tokens, width = states.shape
    return states.reshape(batch, tokens, heads, width // heads).transpose(1, 2)


def _encoder_projection(model: Any) -> nn.Module | None:
    # VisionEncoderDecoderModel projects encoder states only when the widths differ (see its forward).
    encoder_width, decoder_width = model.encoder.config.hidden_size, model.decoder.config.hidden_size
    if encoder_width != decoder_width and getattr(model.decoder.config, "cross_attention_hidden_size", None) is None:
        return model.enc_to_dec_proj
    return None


def empty_past(model_config: Any, sequences: int, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """The self-attention cache before the first token: (L, 2, N, H, 0, D)."""
    config = model_config.decoder
    heads = config.num_attention_heads
    return torch.zeros(config.num_hidden_layers, 2, sequences, heads, 0, config.hidden_size // heads,
                       dtype=dtype, device=device)
