"""How sure the model is of a caption: a number in [0, 1] from its tokens' log-probabilities.

`caption_confidence` scores the caption's tokens (EOS included) teacher-forced on the image and on a few
views of it that name the same things (`inference.views`: the picture moved by two pixels). Each token's
probability is averaged over the views, the probability of that token once the small moves the model
should not care about are averaged out; the confidence is the geometric mean of these averages over the
tokens, exp(mean over tokens of log(mean over views of p)). Without views it is the plain geometric mean
of the token probabilities, exp(mean log-probability).

Why views: the fixture's wrong captions are confident ones (a small circle named "square" with
probability 0.99), so no function of one pass's token probabilities separated them well (AUROC of
"wrong" about 0.7); the same caption on a view moved by a fraction of a patch often loses that
probability, while a right caption holds (AUROC about 0.81 with four views for that fixture, less for a
fixture trained with another seed; docs/web.md has the numbers).
The mean over tokens, not the sum, so a long caption is not less "sure" for its length alone. The
probabilities are the model's own (teacher-forced, before search penalties such as no-repeat n-grams), so
every engine path computes the same number for the same tokens.
"""

from __future__ import annotations

import math
from typing import Sequence


def caption_confidence(token_logprobs: Sequence[float], view_logprobs: Sequence[Sequence[float]] = ()) -> float:
    """exp(mean over tokens of log(mean over the image and its views of the token's probability)), in
    [0, 1]; `view_logprobs` holds one list per view, aligned with `token_logprobs`. 0.0 without tokens."""
    if not token_logprobs:
        return 0.0
    views = [token_logprobs, *view_logprobs]
    if any(len(v) != len(token_logprobs) for v in views):
        raise ValueError("every view must score the same tokens")
    total = 0.0
    for position in range(len(token_logprobs)):
        logprobs = [v[position] for v in views]
        top = max(logprobs)  # log of the mean probability, without underflow for improbable tokens
        if top == -math.inf:
            return 0.0
        total += top + math.log(sum(math.exp(lp - top) for lp in logprobs) / len(views))
    return min(1.0, math.exp(total / len(token_logprobs)))
