"""The promotion gate: may a retrained candidate replace the active version? A pure function of scores.

Rule (issue 5): promote only if the candidate's CIDEr on held-out *feedback* improves on the active
version's by more than `min_feedback_gain`, and its CIDEr on the held-out *base* set drops by no more than
`cider_tolerance`, a fraction of the active version's base CIDEr (0.05 = at most 5% worse). A relative
tolerance means the same setting works for COCO (CIDEr ~1) and the synthetic set (CIDEr ~3).

The scores are small dataclasses (`Scores` per model and held-out set, `ModelScores` per model,
`Comparison` for both); `dataclasses.asdict` gives the JSON stored on the run and printed by the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Scores:
    """Caption metrics of one model on one held-out set (CIDEr in [0, 10], the others in [0, 1])."""

    cider: float
    bleu_4: float
    rouge_l: float
    meteor: float | None = None  # None when not computed (it costs a JVM start; the gate does not use it)


@dataclass(frozen=True)
class ModelScores:
    """One model scored on both held-out sets."""

    base: Scores  # the held-out base split (references renamed as the training data was)
    feedback: Scores  # the held-out corrections


@dataclass(frozen=True)
class Comparison:
    """The candidate and the active version, scored on the same held-out sets: what the gate decides on."""

    candidate: ModelScores
    active: ModelScores


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and a sentence saying why, recorded on the run and the candidate version."""

    promote: bool
    reason: str
    max_base_drop: float  # the largest base CIDEr drop this decision allowed, absolute

    def to_dict(self) -> dict:
        """JSON-ready form for the registry and the run record."""
        return asdict(self)


def decide_promotion(scores: Comparison, *, cider_tolerance: float, min_feedback_gain: float = 0.0) -> GateDecision:
    """Apply the gate; the reason names the numbers so a person can see how close it was."""
    if cider_tolerance < 0 or min_feedback_gain < 0:
        raise ValueError("cider_tolerance and min_feedback_gain must not be negative")
    candidate, active = scores.candidate, scores.active
    gain = candidate.feedback.cider - active.feedback.cider
    max_drop = cider_tolerance * max(active.base.cider, 0.0)
    drop = active.base.cider - candidate.base.cider
    feedback_text = f"held-out feedback CIDEr {active.feedback.cider:.3f} -> {candidate.feedback.cider:.3f}"
    base_text = f"base CIDEr {active.base.cider:.3f} -> {candidate.base.cider:.3f}"
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
    return GateDecision(
        True, f"better on held-out feedback ({feedback_text}) and {base_text} (allowed drop {max_drop:.3f})", max_drop
    )
