"""COCO metrics through pycocoevalcap (real Java scorers) and model evaluation over a COCO-format split.

One METEOR JVM (~9 s to start) is shared by the whole module through the `scorer` fixture.
"""

from __future__ import annotations

import hashlib
import shutil
from typing import Sequence

import pytest

from inference.images import load_image
from inference.types import Caption, Captioner, GenerationOptions
from training.data.coco import load_split, references
from training.evaluate import (
    METRIC_NAMES,
    CaptionScorer,
    EvaluationError,
    evaluate_model,
    score_captions,
    spice_unavailable_reason,
)

REFS = {
    1: ["a red circle on the left", "a big red circle"],
    2: ["two small blue squares at the top", "two blue squares"],
    3: ["a green star in the middle", "one green star"],
}

REFS_FIRST = {i: refs[0] for i, refs in REFS.items()}


@pytest.fixture(scope="module")
def scorer():
    with CaptionScorer() as shared:
        yield shared


class ReferenceCaptioner:
    """A stand-in `Captioner` that answers with a fixed caption per image (looked up by its bytes)."""

    def __init__(self, by_sha: dict[str, str], version: str = "stand-in") -> None:
        self.by_sha, self.batches, self._version = by_sha, [], version

    @property
    def model_version(self) -> str:
        return self._version

    def caption(self, images: Sequence[bytes], options: GenerationOptions | None = None) -> list[Caption]:
        self.batches.append((len(images), options))
        for data in images:
            load_image(data)  # the real intake: a file that is not an image is refused as the engine would
        return [Caption(text=self.by_sha[hashlib.sha256(data).hexdigest()], model_version=self._version)
                for data in images]


def _captioner_for(dataset, pick) -> ReferenceCaptioner:
    return ReferenceCaptioner({hashlib.sha256(i.path.read_bytes()).hexdigest(): pick(i) for i in dataset.items})


def test_exact_matches_score_one_and_disjoint_words_zero(scorer):
    exact = scorer.score({i: refs[0] for i, refs in REFS.items()}, {i: refs[:1] for i, refs in REFS.items()})
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l"):
        assert getattr(exact, name) == pytest.approx(1.0, abs=1e-6), name
    assert exact.cider > 1.0 and exact.n_images == 3
    disjoint = scorer.score({i: "zebra quokka umbrella" for i in REFS}, REFS)
    assert all(value == pytest.approx(0.0, abs=1e-9) for value in disjoint.scores().values())  # BLEU smooths by 1e-15


def test_right_captions_beat_wrong_ones_on_every_metric(scorer):
    right = scorer.score({1: "a red circle on the left side", 2: "two blue squares", 3: "a green star"}, REFS)
    wrong = scorer.score({1: "a green star", 2: "a red circle", 3: "two blue squares at the top"}, REFS)
    assert set(right.scores()) == set(METRIC_NAMES) - {"spice"}
    for name, value in right.scores().items():
        assert value > wrong.scores()[name], name
    assert right.skipped == {"spice": "not requested"} and right.spice is None


def test_tokenization_ignores_case_and_punctuation_and_empty_predictions_score_zero(scorer):
    plain = scorer.score({1: "a red circle on the left", 2: "two blue squares"}, REFS)
    shouted = scorer.score({1: "A Red Circle, on the left.", 2: "Two blue\nsquares!"}, REFS)
    assert shouted.scores() == pytest.approx(plain.scores())
    partial = scorer.score({1: "", 2: "two blue squares", 3: "   "}, REFS)
    assert partial.cider_per_image[1] == partial.cider_per_image[3] == 0.0
    assert partial.cider_per_image[2] > 0.0


def test_idf_references_let_cider_weigh_a_word_every_scored_reference_shares(scorer):
    # Held-out corrections of a rename: every reference says "ball", so on its own CIDEr weighs "ball" as 0.
    refs = {1: ["a red ball on the left"], 2: ["a blue ball at the top"], 3: ["a green ball in the middle"]}
    context = {10 + i: [f"a {colour} {shape} on the left"]
               for i, (colour, shape) in enumerate((c, s) for c in ("red", "blue", "green") for s in ("circle", "square"))}
    said_ball = {i: "ball" for i in refs}
    assert scorer.score(said_ball, refs).cider == pytest.approx(0.0, abs=1e-9)
    with_context = scorer.score(said_ball, refs, idf_references=context)
    assert with_context.cider > 0.5 and set(with_context.cider_per_image) == set(refs)  # context is not scored
    assert scorer.score({i: "circle" for i in refs}, refs, idf_references=context).cider == pytest.approx(0.0, abs=1e-9)
    # Only CIDEr uses document frequencies; no context means the plain score.
    assert with_context.bleu_1 == pytest.approx(scorer.score(said_ball, refs).bleu_1)
    assert scorer.score(REFS_FIRST, REFS, idf_references={}).cider == scorer.score(REFS_FIRST, REFS).cider


def test_spice_is_skipped_with_a_reason_when_unavailable(scorer):
    metrics = CaptionScorer(with_spice=True)._spice({1: ["a b"]}, {1: ["a b"]})
    reason = spice_unavailable_reason()
    if reason is not None:  # offline: the CoreNLP jars are never downloaded
        assert metrics == (None, {"spice": reason}) and "CoreNLP" in reason
    else:
        assert metrics[0] is not None


def test_meteor_can_be_skipped_and_bad_inputs_are_user_errors(monkeypatch):
    with pytest.raises(EvaluationError, match="no predictions"):
        score_captions({}, REFS)
    with pytest.raises(EvaluationError, match="no references, e.g. image 9"):
        score_captions({9: "a cat"}, REFS)
    without_meteor = score_captions({1: "a red circle", 2: "two blue squares"}, REFS, with_meteor=False)
    assert without_meteor.meteor is None and without_meteor.skipped["meteor"] == "not requested"
    assert "meteor" not in without_meteor.scores() and without_meteor.cider > 0
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EvaluationError, match="need Java") as info:
        score_captions({1: "a red circle"}, REFS)
    assert info.value.reason == "java_missing"


def test_evaluate_model_captions_every_image_in_batches(synthetic_dataset, scorer):
    test = load_split(synthetic_dataset.out_dir, "test")
    oracle = _captioner_for(test, lambda item: item.captions[0])
    options = GenerationOptions(num_beams=2)
    seen = []
    report = evaluate_model(oracle, test, batch_size=5, options=options, scorer=scorer, progress=seen.append)
    assert isinstance(oracle, Captioner)
    assert [n for n, _ in oracle.batches] == [5, 5, 2] and all(o is options for _, o in oracle.batches)
    assert seen == [5, 5, 2]
    assert report.predictions == {i.image_id: i.captions[0] for i in test.items}
    assert report.model_version == "stand-in" and report.images_per_second > 0
    assert report.metrics.n_images == 12 and report.metrics.bleu_1 > 0.9

    blind = _captioner_for(test, lambda item: "a red circle")  # ignores the image
    blind_report = evaluate_model(blind, test, batch_size=12, scorer=scorer)
    assert all(report.metrics.scores()[k] > v for k, v in blind_report.metrics.scores().items())
    assert references(test)[test.items[0].image_id] == list(test.items[0].captions)


def test_evaluate_model_names_the_image_the_captioner_refused(synthetic_dataset, tmp_path):
    copy = shutil.copytree(synthetic_dataset.out_dir, tmp_path / "data")
    test = load_split(copy, "test").subset(4)
    picky = _captioner_for(test, lambda item: item.captions[0])
    test.items[2].path.write_bytes(b"<html>not a picture</html>")
    with pytest.raises(EvaluationError, match=f"cannot caption {test.items[2].path}: the file is not an image"):
        evaluate_model(picky, test, batch_size=4)
    with pytest.raises(EvaluationError, match="batch size"):
        evaluate_model(picky, test, batch_size=0)


def test_cli_evaluate_json_and_table(synthetic_dataset, tiny_model_dir, tmp_path, capsys):
    import json

    from rich.console import Console

    from capbot.cli import main
    from capbot.cli.eval_cmds import _table

    out = tmp_path / "predictions.json"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir), "--split", "test",
            "--limit", "4", "--batch-size", "3", "--max-new-tokens", "6", "--predictions", str(out), "--json",
            "--no-meteor"]  # METEOR itself is covered above; this saves a JVM start
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 4 and result["split"] == "test"
    assert set(result["metrics"]) == set(METRIC_NAMES) - {"spice", "meteor"}
    assert set(result["skipped"]) == {"spice", "meteor"}
    assert result["concepts"]["n"] == 4 and 0.0 <= result["concepts"]["both"] <= 1.0
    rows = json.loads(out.read_text())
    test = load_split(synthetic_dataset.out_dir, "test")
    assert [r["image_id"] for r in rows] == [i.image_id for i in test.items[:4]]
    assert all(isinstance(r["caption"], str) for r in rows)

    console = Console(record=True, width=120)
    console.print(_table(result))
    text = console.export_text()
    assert "cider" in text and "skipped: not requested" in text and "colour accuracy" in text

    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir), "--split", "nope"]) == 2
    assert "error: no split 'nope'" in capsys.readouterr().err


def test_tokenizer_matches_pycocoevalcaps_wrapper():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from training.evaluate import _ptb_tokenize

    lines = ["A man's bike, parked (outside)!", "Two  dogs -- playing...", "A CAFÉ sign; at night?", "It's 5 o'clock."]
    theirs = PTBTokenizer().tokenize({i: [{"caption": line}] for i, line in enumerate(lines)})
    assert _ptb_tokenize(lines) == [theirs[i][0] for i in range(len(lines))]
