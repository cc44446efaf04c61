"""Inference tests run tiny models with one intra-op thread: on the shared 2-core machine, two OpenMP workers
spin-waiting for a busy core made generation ~10x slower. Scoped to this package; restored afterwards."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
