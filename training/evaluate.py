"""COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, optional SPICE) and model evaluation.

Scoring follows pycocoevalcap's COCOEvalCap: predictions and references go through the PTB tokenizer
first, then each scorer. We pick the scorers ourselves because COCOEvalCap always runs SPICE, which
downloads Stanford CoreNLP on first use and fails offline; SPICE runs only when its jars are present.

METEOR and the tokenizer run Java. METEOR keeps one JVM per `CaptionScorer` (its start costs ~9 s), so
code that scores several times (candidate and active model, every evaluation step) should share one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from storage.errors import UserError
from inference.types import Captioner, GenerationOptions
from training.data.coco import CocoCaptions

log = logging.getLogger(__name__)

METRIC_NAMES = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "spice")


class EvaluationError(UserError):
    """Scoring could not run (no Java, mismatched ids, an image the captioner refused)."""


@dataclass(frozen=True)
class Metrics:
    """Corpus-level scores in [0, 1] (CIDEr in [0, 10]); `spice` is None when skipped (see `skipped`)."""

    bleu_1: float
    bleu_2: float
    bleu_3: float
    bleu_4: float
    meteor: float | None  # None when not requested
    rouge_l: float
    cider: float
    spice: float | None
    n_images: int
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    cider_per_image: dict[int, float] = field(default_factory=dict, repr=False)

    def scores(self) -> dict[str, float]:
        """The computed metrics by name (skipped ones left out)."""
        return {name: getattr(self, name) for name in METRIC_NAMES if getattr(self, name) is not None}

    def to_dict(self) -> dict:
        """JSON-ready form without the per-image scores."""
        data = asdict(self)
        data.pop("cider_per_image")
        return data


@dataclass(frozen=True)
class EvaluationReport:
    """A model's captions for a dataset and their scores."""

    metrics: Metrics
    predictions: dict[int, str]
    model_version: str
    seconds: float  # captioning wall time, excluding scoring

    @property
    def images_per_second(self) -> float:
        """Captioning throughput."""
        return len(self.predictions) / self.seconds if self.seconds > 0 else 0.0


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here (its Stanford CoreNLP jars are missing), or None when it can."""
    import pycocoevalcap.spice as spice_pkg

    lib = Path(spice_pkg.__file__).parent / "lib"
    jars = [lib / "stanford-corenlp-3.6.0.jar", lib / "stanford-corenlp-3.6.0-models.jar"]
    missing = [j.name for j in jars if not j.is_file()]
    if missing:
        return f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(missing)}) in {lib}; it is downloaded on first use, which needs internet"
    return None


class CaptionScorer:
    """Holds the METEOR JVM between scoring calls; use as a context manager or call `close()`."""

    def __init__(self, *, with_spice: bool = False, with_meteor: bool = True) -> None:
        self.with_spice = with_spice
        self.with_meteor = with_meteor  # False skips METEOR's ~9 s JVM start (retraining's gate needs only CIDEr)
        self._meteor = None

    def __enter__(self) -> "CaptionScorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the METEOR JVM."""
        if self._meteor is not None:
            process = self._meteor.meteor_p
            process.stdin.close()
            process.kill()
            process.wait()
            self._meteor = None

    def score(self, predictions: Mapping[int, str], references: Mapping[int, Sequence[str]], *,
              idf_references: Mapping[int, Sequence[str]] | None = None) -> Metrics:
        """Score one caption per image against all of that image's references.

        `idf_references`: other images' references that count towards CIDEr's document frequencies but are
        not scored. Without them a small, uniform set (every held-out correction says "ball") weighs its
        shared words as zero, so CIDEr could not see the one change that set is about.
        """
        res, gts, context = _tokenize(predictions, references, idf_references or {})
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.rouge.rouge import Rouge

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        meteor = self._meteor_score(gts, res) if self.with_meteor else None
        rouge, _ = Rouge().compute_score(gts, res)
        cider_each = _cider_per_image(gts, res, context)
        spice, skipped = self._spice(gts, res)
        return Metrics(
            *(float(b) for b in bleu), meteor=None if meteor is None else float(meteor), rouge_l=float(rouge),
            cider=sum(cider_each.values()) / len(cider_each), spice=spice, n_images=len(res),
            skipped=skipped if self.with_meteor else {**skipped, "meteor": "not requested"},
            cider_per_image=cider_each,
        )

    def _meteor_score(self, gts: dict, res: dict) -> float:
        if self._meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor

            self._meteor = _java(Meteor)
        try:
            score, _ = self._meteor.compute_score(gts, res)
        except ValueError as exc:  # the JVM died: its stdout closed mid-answer
            stderr = self._meteor.meteor_p.stderr.read(2000).decode(errors="replace") if self._meteor.meteor_p.poll() is not None else ""
            self._meteor = None
            raise EvaluationError(f"METEOR failed: {stderr.strip() or exc}", reason="meteor_failed") from exc
        return score

    def _spice(self, gts: dict, res: dict) -> tuple[float | None, dict[str, str]]:
        if not self.with_spice:
            return None, {"spice": "not requested"}
        reason = spice_unavailable_reason()
        if reason is None:
            try:
                from pycocoevalcap.spice.spice import Spice

                score, _ = Spice().compute_score(gts, res)
                return float(score), {}
            except Exception as exc:  # SPICE's JVM is fragile (Java version, LMDB cache): report, don't fail
                reason = f"SPICE failed: {exc}"
        log.warning("SPICE skipped", extra={"reason": reason})
        return None, {"spice": reason}


def score_captions(
    predictions: Mapping[int, str],
    references: Mapping[int, Sequence[str]],
    *,
    with_spice: bool = False,
    with_meteor: bool = True,
    scorer: CaptionScorer | None = None,
    idf_references: Mapping[int, Sequence[str]] | None = None,
) -> Metrics:
    """COCO metrics of `predictions` (one caption per id) against `references` (all captions per id).

    Pass a `scorer` to reuse its METEOR JVM across calls (its own options then apply); otherwise one is
    started and stopped here.
    """
    if scorer is not None:
        return scorer.score(predictions, references, idf_references=idf_references)
    with CaptionScorer(with_spice=with_spice, with_meteor=with_meteor) as own:
        return own.score(predictions, references, idf_references=idf_references)


def evaluate_model(
    captioner: Captioner,
    dataset: CocoCaptions,
    *,
    batch_size: int = 8,
    options: GenerationOptions | None = None,
    with_spice: bool = False,
    with_meteor: bool = True,
    scorer: CaptionScorer | None = None,
    progress: Callable[[int], None] | None = None,
    idf_references: Mapping[int, Sequence[str]] | None = None,
) -> EvaluationReport:
    """Caption every image of `dataset` in batches, then score against all its references (see
    `CaptionScorer.score` for `idf_references`)."""
    if batch_size < 1:
        raise EvaluationError("batch size must be at least 1", reason="bad_batch_size")
    started = time.perf_counter()
    predictions: dict[int, str] = {}
    items = dataset.items
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        for item, caption in zip(batch, _caption_batch(captioner, batch, options)):
            predictions[item.image_id] = caption.text
        if progress is not None:
            progress(len(batch))
    seconds = time.perf_counter() - started
    refs = {item.image_id: list(item.captions) for item in items}
    metrics = score_captions(predictions, refs, with_spice=with_spice, with_meteor=with_meteor, scorer=scorer,
                             idf_references=idf_references)
    log.info("evaluated", extra={"images": len(items), "cider": metrics.cider, "seconds": round(seconds, 2)})
    return EvaluationReport(metrics, predictions, captioner.model_version, seconds)


def _caption_batch(captioner: Captioner, batch, options: GenerationOptions | None) -> list:
    images = [_read(item.path) for item in batch]
    try:
        captions = captioner.caption(images, options)
    except UserError:
        # Find the image that was refused, so the message names a file the user can fix.
        for item, image in zip(batch, images):
            try:
                captioner.caption([image], options)
            except UserError as exc:
                raise EvaluationError(f"cannot caption {item.path}: {exc.message}", reason="bad_image") from exc
        raise
    if len(captions) != len(batch):
        raise RuntimeError(f"captioner returned {len(captions)} captions for {len(batch)} images")
    return captions


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EvaluationError(f"cannot read image {path}: {exc.strerror}", reason="missing_image") from exc


def _tokenize(predictions: Mapping[int, str], references: Mapping[int, Sequence[str]],
              context: Mapping[int, Sequence[str]]) -> tuple[dict, dict, dict]:
    """PTB-tokenize predictions, references and context references (lower-cased, punctuation dropped) as
    COCOEvalCap does, in one JVM run."""
    if not predictions:
        raise EvaluationError("nothing to score: no predictions", reason="empty")
    missing = [i for i in predictions if not references.get(i)]
    if missing:
        raise EvaluationError(f"{len(missing)} predictions have no references, e.g. image {missing[0]}", reason="mismatch")
    ids, context_ids = list(predictions), [i for i in context if context[i]]
    lines = [predictions[i] for i in ids] + [r for i in ids for r in references[i]]
    lines += [r for i in context_ids for r in context[i]]
    tokens = iter(_ptb_tokenize(lines))
    res = {i: [next(tokens)] for i in ids}
    gts = {i: [next(tokens) for _ in references[i]] for i in ids}
    return res, gts, {i: [next(tokens) for _ in context[i]] for i in context_ids}


def _cider_per_image(gts: dict, res: dict, context: dict) -> dict[int, float]:
    """CIDEr of each prediction, with document frequencies over `gts` and `context` references."""
    from pycocoevalcap.cider.cider import Cider

    # Context images need a prediction to be accepted; CIDEr's document frequencies and corpus size come
    # from references alone, so that placeholder changes no scored image's result.
    all_gts = {("scored", i): refs for i, refs in gts.items()} | {("context", i): refs for i, refs in context.items()}
    all_res = {("scored", i): hyp for i, hyp in res.items()} | {("context", i): refs[:1] for i, refs in context.items()}
    _, scores = Cider().compute_score(all_gts, all_res)
    return {key[1]: float(score) for key, score in zip(all_gts, scores) if key[0] == "scored"}


def _ptb_tokenize(lines: list[str]) -> list[str]:
    """Run pycocoevalcap's Stanford PTBTokenizer over stdin, one output line per input line.

    pycocoevalcap's own wrapper writes a temporary file into its (maybe read-only) package directory and
    prints progress on our stderr; the jar and its flags are the same.
    """
    import subprocess

    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = Path(ptbtokenizer.__file__).parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
    cmd = ["java", "-Dfile.encoding=UTF-8", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
           "-preserveLines", "-lowerCase", "-encoding", "utf-8"]
    text = "\n".join(" ".join(line.split()) for line in lines) + "\n"  # newlines inside a caption would shift lines
    done = _java(lambda: subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=600))
    out = done.stdout.decode("utf-8", errors="replace").split("\n")
    if done.returncode != 0 or len(out) < len(lines):
        raise EvaluationError(f"the PTB tokenizer failed: {done.stderr.decode(errors='replace')[-500:]}", reason="tokenizer_failed")
    punctuation = set(ptbtokenizer.PUNCTUATIONS)
    return [" ".join(w for w in line.split() if w not in punctuation) for line in out[: len(lines)]]


def _java(start: Callable):
    try:
        return start()
    except FileNotFoundError as exc:
        raise EvaluationError(
            "the COCO metrics need Java (8 or later) on PATH, e.g. `apt-get install default-jre-headless`",
            reason="java_missing",
        ) from exc
