"""The promotion gate: may a retrained candidate replace the active version? A pure function of scores.

Rule (issue 5): promote only if the candidate's score on held-out *feedback* improves on the active
version's by at least `min_feedback_gain`, and its CIDEr on the held-out *base* set drops by no more than
`cider_tolerance`, a fraction of the active version's base CIDEr (0.05 = at most 5% worse). A relative
tolerance means the same setting works for COCO (CIDEr ~1) and the synthetic set (CIDEr ~3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GateScores:
    """What the gate compares: both models scored on the same held-out sets."""

    candidate_feedback: float
    active_feedback: float
    candidate_base_cider: float
    active_base_cider: float


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and a sentence saying why, recorded on the run and the candidate version."""

    promote: bool
    reason: str
    max_base_drop: float  # the largest base CIDEr drop this decision allowed, absolute

    def to_dict(self) -> dict:
        """JSON-ready form for the registry and the run record."""
        return asdict(self)


def decide_promotion(
    scores: GateScores, *, cider_tolerance: float, min_feedback_gain: float = 0.0, feedback_metric: str = "CIDEr"
) -> GateDecision:
    """Apply the gate; the reason names the numbers so a person can see how close it was."""
    if cider_tolerance < 0 or min_feedback_gain < 0:
        raise ValueError("cider_tolerance and min_feedback_gain must not be negative")
    gain = scores.candidate_feedback - scores.active_feedback
    max_drop = cider_tolerance * max(scores.active_base_cider, 0.0)
    drop = scores.active_base_cider - scores.candidate_base_cider
    feedback_text = (
        f"held-out feedback {feedback_metric} {scores.active_feedback:.3f} -> {scores.candidate_feedback:.3f}"
    )
    base_text = f"base CIDEr {scores.active_base_cider:.3f} -> {scores.candidate_base_cider:.3f}"
    if gain <= min_feedback_gain:
        return GateDecision(
            False,
            f"feedback score did not improve enough ({feedback_text}; needs a gain above {min_feedback_gain:.3f})",
            max_drop,
        )
    if drop > max_drop:
        return GateDecision(
            False,
            f"base CIDEr dropped too much ({base_text}; allowed drop {max_drop:.3f} = "
            f"{cider_tolerance:.0%} of the active score); {feedback_text}",
            max_drop,
        )
    return GateDecision(True, f"promoted: {feedback_text}; {base_text} (allowed drop {max_drop:.3f})", max_drop)
