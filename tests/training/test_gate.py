"""The promotion gate's rule, at and around its boundaries."""

from __future__ import annotations

import pytest

from training.gate import Comparison, ModelScores, Scores, decide_promotion


def _model(feedback_cider: float, base_cider: float) -> ModelScores:
    # The other metrics are deliberately the opposite of CIDEr's verdict: the gate looks at CIDEr only.
    return ModelScores(base=Scores(base_cider, bleu_4=1 - base_cider / 10, rouge_l=0.5),
                       feedback=Scores(feedback_cider, bleu_4=1 - feedback_cider / 10, rouge_l=0.5, meteor=0.2))


def _scores(cand_fb=1.0, act_fb=0.5, cand_base=2.0, act_base=2.0) -> Comparison:
    return Comparison(candidate=_model(cand_fb, cand_base), active=_model(act_fb, act_base))


def test_better_feedback_and_steady_base_is_promoted():
    decision = decide_promotion(_scores(), cider_tolerance=0.05)
    assert decision.promote
    # The CLI prints "<status>: <reason>", so the reason says why, without repeating the outcome.
    assert decision.reason == ("better on held-out feedback (held-out feedback CIDEr 0.500 -> 1.000) and "
                               "base CIDEr 2.000 -> 2.000 (allowed drop 0.100)")
    assert decision.max_base_drop == pytest.approx(0.1)


@pytest.mark.parametrize(("cand_fb", "gain_needed"), [(0.5, 0.0), (0.4, 0.0), (0.55, 0.1)])
def test_feedback_that_does_not_improve_enough_is_refused(cand_fb, gain_needed):
    decision = decide_promotion(_scores(cand_fb=cand_fb), cider_tolerance=0.5, min_feedback_gain=gain_needed)
    assert not decision.promote and "feedback score did not improve" in decision.reason
    assert f"{cand_fb:.3f}" in decision.reason


def test_base_drop_is_relative_to_the_active_score():
    assert decide_promotion(_scores(cand_base=1.91), cider_tolerance=0.05).promote  # drop 0.09 <= 0.10
    refused = decide_promotion(_scores(cand_base=1.89), cider_tolerance=0.05)  # drop 0.11 > 0.10
    assert not refused.promote and "base CIDEr dropped too much" in refused.reason and "1.890" in refused.reason
    assert decide_promotion(_scores(cand_base=2.5), cider_tolerance=0.0).promote  # improvements always pass


def test_negative_settings_are_rejected():
    with pytest.raises(ValueError):
        decide_promotion(_scores(), cider_tolerance=-0.1)
