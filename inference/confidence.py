"""How sure the model is of a caption: a number in [0, 1] from its tokens' log-probabilities.

`caption_confidence` is the geometric mean of the caption's token probabilities (EOS included), that is
exp(mean log-probability). The mean, not the sum, so a long caption is not less "sure" than a short one
for its length alone. The probabilities are the model's own (teacher-forced, before search penalties
such as no-repeat n-grams), so every engine path computes the same number for the same tokens.
"""

from __future__ import annotations

import math
from typing import Sequence


def caption_confidence(token_logprobs: Sequence[float]) -> float:
    """exp(mean token log-probability), in [0, 1]; 0.0 for a caption without tokens."""
    if not token_logprobs:
        return 0.0
    return min(1.0, math.exp(sum(token_logprobs) / len(token_logprobs)))
