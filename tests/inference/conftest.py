"""Inference tests run tiny models: one intra-op thread is faster than two when the 2-core machine is shared
(OpenMP workers spin-waiting for a busy core made generation ~10x slower)."""

import torch

torch.set_num_threads(1)
