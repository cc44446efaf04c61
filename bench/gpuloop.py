"""Greedy captioning with a static KV cache and a CUDA graph per decode step (the GPU fast loop).

On a GPU, `generate` spends most of a caption in Python and kernel launches: a 16-token caption is ~16 x
~40 small kernels per layer. `StaticGreedy` captures one whole decode step (12 layers, LM head, argmax,
EOS bookkeeping) as a CUDA graph over fixed buffers, so a step is one graph launch:
- the self-attention cache is preallocated to the caption length and written at the step's position
  (a device tensor, so the same graph serves every step); attention masks the positions not yet written;
- the cross-attention keys/values come from `inference.fast.graph.EncoderGraph`, once per image;
- the chosen token, the finished flags and the position advance inside the graph; the host only replays
  it `max_new_tokens` times and reads the tokens once at the end.

Without CUDA (tests, `bench.gpu --smoke`) the same step runs eagerly, and its tokens equal the search's
(`inference.search`, no n-gram ban), which is what the smoke test checks. Greedy only: beam search on a
GPU stays on the exact path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from inference.fast.graph import EncoderGraph, _linear, attention_scaling


class StaticGreedy(nn.Module):
    """Greedy decoding of `batch` images for exactly `max_new_tokens` steps over static buffers."""

    def __init__(self, model: Any, batch: int, max_new_tokens: int, *, start_id: int, eos_id: int, pad_id: int,
                 use_cuda_graph: bool | None = None) -> None:
        super().__init__()
        self.model = model
        decoder = model.decoder
        self.transformer, self.lm_head = decoder.transformer, decoder.lm_head
        self.encoder = EncoderGraph(model)
        config = decoder.config
        self.heads, self.width = config.num_attention_heads, config.hidden_size
        self.scales = [attention_scaling(config, i) for i in range(len(self.transformer.h))]
        self.batch, self.steps = batch, max_new_tokens
        self.start_id, self.eos_id, self.pad_id = start_id, eos_id, pad_id
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.use_cuda_graph = self.device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
        self._allocate()
        self._graph: Any = None

    def _allocate(self) -> None:
        layers, head = len(self.transformer.h), self.width // self.heads
        shape = (self.batch, self.heads, self.steps, head)
        kw = {"device": self.device, "dtype": self.dtype}
        self.keys = [torch.zeros(shape, **kw) for _ in range(layers)]
        self.values = [torch.zeros(shape, **kw) for _ in range(layers)]
        self.cross: list[torch.Tensor] | None = None
        self.token = torch.full((self.batch,), self.start_id, dtype=torch.long, device=self.device)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.finished = torch.zeros(self.batch, dtype=torch.bool, device=self.device)
        self.out = torch.full((self.batch, self.steps), self.pad_id, dtype=torch.long, device=self.device)
        self.slots = torch.arange(self.steps, device=self.device)

    @torch.inference_mode()
    def generate(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, C, H, W) pixels -> (batch, 1 + max_new_tokens) token ids, start token first."""
        cross = self.encoder(pixel_values.to(self.device, self.dtype))
        if self.cross is None:
            self.cross = [t.clone() for t in cross]
        else:
            for buffer, fresh in zip(self.cross, cross):
                buffer.copy_(fresh)
        self._reset()
        if self.use_cuda_graph:
            if self._graph is None:
                self._capture()
                self._reset()
            for _ in range(self.steps):
                self._graph.replay()
        else:
            for _ in range(self.steps):
                self._step()
        start = torch.full((self.batch, 1), self.start_id, dtype=torch.long, device=self.device)
        return torch.cat([start, self.out], dim=1)

    def _reset(self) -> None:
        self.token.fill_(self.start_id)
        self.position.zero_()
        self.finished.zero_()
        self.out.fill_(self.pad_id)

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up on the side stream, as CUDA graph capture requires
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._step()

    def _step(self) -> None:
        """One token for every row: everything in place on the static buffers."""
        hidden = self.transformer.wte(self.token) + self.transformer.wpe(self.position)
        visible = (self.slots <= self.position).view(1, 1, 1, -1)
        for i, block in enumerate(self.transformer.h):
            hidden = hidden + self._self_attention(block, block.ln_1(hidden), i, visible)
            hidden = hidden + self._cross_attention(block, block.ln_cross_attn(hidden), i)
            mlp = block.mlp
            hidden = hidden + _linear(mlp.act(_linear(block.ln_2(hidden), mlp.c_fc)), mlp.c_proj)
        logits = torch.matmul(self.transformer.ln_f(hidden), self.lm_head.weight.t())
        chosen = torch.where(self.finished, torch.full_like(self.token, self.pad_id), logits.argmax(dim=-1))
        self.out.index_copy_(1, self.position, chosen[:, None])
        self.finished |= chosen == self.eos_id
        self.token.copy_(chosen)
        self.position.add_(1)

    def _self_attention(self, block: Any, hidden: torch.Tensor, layer: int, visible: torch.Tensor) -> torch.Tensor:
        attn = block.attn
        head = self.width // self.heads
        query, key, value = _linear(hidden, attn.c_attn).split(self.width, dim=-1)
        query = query.view(-1, self.heads, 1, head)
        self.keys[layer].index_copy_(2, self.position, key.view(-1, self.heads, 1, head))
        self.values[layer].index_copy_(2, self.position, value.view(-1, self.heads, 1, head))
        scores = torch.matmul(query, self.keys[layer].transpose(-1, -2)) * self.scales[layer]
        weights = torch.softmax(scores.masked_fill(~visible, float("-inf")).float(), dim=-1).to(self.dtype)
        out = torch.matmul(weights, self.values[layer])
        return _linear(out.reshape(-1, self.width), attn.c_proj)

    def _cross_attention(self, block: Any, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        attn = block.crossattention
        keys, values = self.cross[2 * layer], self.cross[2 * layer + 1]
        query = _linear(hidden, attn.q_attn).view(-1, self.heads, 1, self.width // self.heads)
        weights = torch.softmax((torch.matmul(query, keys.transpose(-1, -2)) * self.scales[layer]).float(), dim=-1)
        out = torch.matmul(weights.to(self.dtype), values)
        return _linear(out.reshape(-1, self.width), attn.c_proj)
