"""How sure the model is of a caption: a number in [0, 1] from its tokens' log-probabilities.

`caption_confidence` scores the caption's tokens (EOS included) teacher-forced on the image and on a few
views of it that name the same things (`inference.views`: the picture moved by two pixels). For each
token it takes a cautious estimate of its probability: the mean over the image and its views less one
standard deviation, but never below the lowest of them. The confidence is the geometric mean of these
estimates over the tokens, exp(mean over tokens of log(estimate)). Without views the standard deviation
is 0 and the estimate is the token's probability, so the confidence is the plain geometric mean of the
token probabilities, exp(mean log-probability).

Why views: the fixture's wrong captions are confident ones (a circle named "square" with probability 0.99),
so no function of one pass's token probabilities separated them well (AUROC of "wrong" about 0.7); the
same caption on a view moved by a fraction of a patch often loses that probability, while a right caption
holds. Why less a standard deviation: a token whose probability swings between views is a guess even when
it is high on average. On the fixture and the same recipe trained with two other seeds, the plain mean over
the views gave 0.69-0.82 and the cautious estimate 0.80-0.82 on the sets they were compared on (0.70 on
one seed's own test images; docs/web.md has the numbers and the other estimates tried).
The mean over tokens, not the sum, so a long caption is not less "sure" for its length alone. The
probabilities are the model's own (teacher-forced, before search penalties such as no-repeat n-grams), so
every engine path computes the same number for the same tokens.
"""

from __future__ import annotations

import math
from typing import Sequence


def caption_confidence(token_logprobs: Sequence[float], view_logprobs: Sequence[Sequence[float]] = ()) -> float:
    """exp(mean over tokens of log(cautious probability)), in [0, 1], where a token's cautious probability
    is max(mean - standard deviation, minimum) of its probability over the image and its views (see the
    module docstring). `view_logprobs` holds one list per view, aligned with `token_logprobs`. 0.0 without
    tokens."""
    if not token_logprobs:
        return 0.0
    views = [token_logprobs, *view_logprobs]
    if any(len(v) != len(token_logprobs) for v in views):
        raise ValueError("every view must score the same tokens")
    total = 0.0
    for position in range(len(token_logprobs)):
        logprob = cautious_logprob([v[position] for v in views])
        if logprob == -math.inf:
            return 0.0
        total += logprob
    return min(1.0, math.exp(total / len(token_logprobs)))


def cautious_logprob(logprobs: Sequence[float]) -> float:
    """log(max(mean - population standard deviation, minimum)) of the probabilities exp(`logprobs`),
    computed relative to the largest so that improbable tokens do not underflow."""
    top, lowest = max(logprobs), min(logprobs)
    if top == -math.inf:
        return -math.inf
    scaled = [math.exp(lp - top) for lp in logprobs]
    mean = sum(scaled) / len(scaled)
    spread = math.sqrt(sum((p - mean) ** 2 for p in scaled) / len(scaled))
    bound = mean - spread
    if bound <= 0.0 or top + math.log(bound) <= lowest:
        return lowest
    return top + math.log(bound)
