"""Fixtures shared across test packages (tiny models, synthetic data, databases).

Each fixture calls the real library code to build what it returns; expensive ones are session-scoped.
"""

from __future__ import annotations

import os

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
