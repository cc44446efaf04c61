"""`retrain(config) -> RetrainResult`: learn from user corrections, and promote only what is better.

The steps (issue 5, "Retraining"):
 0. Take the run lock (`training.lock`); a run left 'running' by a dead process is marked failed.
 1. Export feedback (every accepted correction, one per user and image); stop early when too few images
    were corrected since the last finished run. Screen it (`training.data.screen`): copy-paste spam and
    corrections beyond a user's per-run cap are set aside, and each image's corrections are resolved by
    consensus (minorities outvoted, ties disputed). Refuse before training, recording the run as
    not_promoted with the reason, when what is left comes from fewer than `min_users` distinct users or
    has fewer than `min_feedback` new images.
 2. Split feedback into train / held-out; rewrite the base references with the renames the active
    version's lineage adopted in earlier rounds (`training.inherited_renames`), then with the systematic
    renames found in this run's training feedback ("users call circles balls", `training.data.renames`);
    mix the train part with a base subset; record the run.
 3. Fine-tune from the ACTIVE registry version (or the configured base model when none is active).
 4. Register the candidate, then score candidate and active on the same held-out base and feedback sets.
 5. Gate (`training.gate`), then ONE transaction: candidate metrics + gate verdict, promotion if it
    passed, and the run's outcome. A crash anywhere before that commit leaves the registry as it was.

Resuming (`RetrainConfig.resume`, the Modal Cron's choice): a run whose process was interrupted (preempted,
killed, stopped) is not repeated from scratch. The next run re-plans the interrupted run's feedback window
(the same corrections, screened, split and mixed the same way), checks that it gives the same data counts,
and continues training from the interrupted run's last checkpoint (`checkpoint_every` steps apart) under a
new run id that keeps the interrupted run's start, so the next window starts where it did. When the data
or the active version moved meanwhile, or no checkpoint was saved, it starts afresh as before.

Which feedback is used: training takes every correction since the last *promoted* run, so feedback the
active version has not learned is never dropped because an earlier candidate was refused; the
early-stop count only looks at corrections since the last *finished* run, so a refused run is not
repeated on identical data. A run refused before training is finished (not_promoted) too: the next run
waits for `min_feedback` newly corrected images, then trains on everything since the last promotion,
the refused run's feedback included.

Outcomes have one name each, here, in the run record (`storage.runs`) and in `capbot retrain`:
skipped | dry_run | promoted | not_promoted (refused by the gate, or before training by the junk rules;
the reason says which) (failures raise after the run is recorded as failed).

Training and captioning are reached through two small seams (`Trainer`, `CaptionerFactory`) whose
defaults call `training.train.train` and `inference.captioner.LocalCaptioner`, made as the config's
captioner spec says: the spec serving uses (`capbot.captioning.captioner_spec`), so candidate and active
are scored on the captions users would get from them (engine, precision, beams); tests pass stand-ins for
the crash and lock cases and the real ones for the learning tests.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine

from storage.errors import UserError
from inference.spec import CaptionerSpec
from inference.types import Captioner
from storage import feedback as storage_feedback
from storage import registry, runs
from storage.blobs import BlobStore
from storage.clock import utcnow
from storage.db import session_scope
from storage.feedback import FeedbackRow
from storage.registry import ModelVersionInfo
from storage.runs import NOT_PROMOTED, PROMOTED
from training.data.coco import CocoCaptions, CocoItem, load_split
from training.data.feedback import split_feedback
from training.data.mix import Mix, build_mix, image_hashes, write_coco_split
from training.data.renames import CaptionEdit, Rename, RenameRules, find_renames, renamer
from training.data.screen import ScreenedFeedback, ScreenRules, screen_feedback
from training.gate import Comparison, GateDecision, ModelScores, Scores, decide_promotion
from training.inherited_renames import InheritedRenames, all_renames, inherited_renamer, lineage_renames
from training.lock import run_lock_for

log = logging.getLogger(__name__)

SKIPPED, DRY_RUN = "skipped", "dry_run"
INTERRUPTED = "interrupted: the process running it stopped before finishing (crash, kill or shutdown)"
STOPPED = "stopped: "  # the reason's start when a signal or cancellation (not an error) ended the run


class RetrainError(UserError):
    """Retraining cannot start or go on for a reason the user can fix (missing base data, bad settings)."""


@dataclass(frozen=True)
class FineTune:
    """What the trainer is asked to do: fine-tune `init_model` on the COCO-format split `data_dir/train`."""

    init_model: str  # directory or hub id of the active version
    parent_version: str | None
    data_dir: Path
    out_dir: Path  # where the candidate model directory must be written
    work_dir: Path  # checkpoints and logs
    epochs: int
    learning_rate: float
    batch_size: int
    seed: int
    freeze_encoder: bool = False
    checkpoint_every: int = 0  # steps between checkpoints in work_dir (0: only at the end)
    resume: bool = False  # continue from work_dir's newest checkpoint (an interrupted run's)


Trainer = Callable[[FineTune], Path]  # returns the candidate's model directory (with capbot.json)
CaptionerFactory = Callable[[str], Captioner]  # model location -> a captioner for it


@dataclass
class RetrainConfig:
    """Everything one retraining run needs; `capbot.app.retrain_config` builds it from Settings."""

    engine: Engine
    blobs: BlobStore
    models_dir: Path  # candidate model directories go here, one per version
    runs_dir: Path  # per-run data mix, checkpoints and the lock file
    base_model: str  # serves (and is fine-tuned) when the registry has no active version
    base_data: Path | None = None  # COCO-format dataset: its train split is mixed in, eval split held out
    base_eval_split: str = "val"
    base_eval_limit: int | None = 500  # held-out base images scored (None = all)
    min_feedback: int = 20  # fewest new corrected images worth a run
    feedback_fraction: float = 0.5  # share of feedback images in the training mix
    feedback_repeats: int = 1  # list each feedback image this often (with more base images to match)
    held_out_fraction: float = 0.2  # share of feedback images kept for scoring
    min_held_out: int = 4  # CIDEr's IDF needs a few images to mean anything
    cider_tolerance: float = 0.05  # base CIDEr may drop by this fraction of the active version's
    min_feedback_gain: float = 0.0  # held-out feedback CIDEr must improve by more than this
    epochs: int = 3
    freeze_encoder: bool = False  # train only the decoder: the new words, not new vision
    rename_rules: RenameRules | None = field(default_factory=RenameRules)  # None: find no new renames (inherited still apply)
    screen_rules: ScreenRules = field(default_factory=ScreenRules)  # copy-paste spam and the per-user cap
    min_users: int = 3  # distinct users the screened feedback must come from, or the run is refused
    consent_default: bool = True  # whether communities that never chose consent to training (docs/privacy.md)
    agreement_cap: int = 2  # an image k users agree on is listed min(k, this) times in the mix
    learning_rate: float = 5e-5
    batch_size: int = 16
    eval_batch_size: int = 16
    with_meteor: bool = True  # METEOR is reported, not gated on; off saves a JVM start (~9 s) per run
    captioner: CaptionerSpec = CaptionerSpec()  # how candidate and active caption the held-out sets: serving's
    seed: int = 0
    dry_run: bool = False  # report what would be trained, change nothing
    resume: bool = False  # continue an interrupted run from its last checkpoint (see the module docstring)
    checkpoint_every: int = 0  # training steps between checkpoints (0: only at the end, nothing to resume)


@dataclass(frozen=True)
class DataCounts:
    """How many images a run saw, by where they came from (stored on the run, printed by the CLI)."""

    feedback_new: int  # corrected images since the last finished run: decides whether to run at all
    feedback: int = 0  # feedback images trained on
    feedback_held_out: int = 0  # feedback images kept for scoring
    feedback_in_eval_dropped: int = 0  # feedback images left out because the base evaluation set has them
    base: int = 0  # base images mixed in
    base_eval: int = 0  # held-out base images scored
    renames: int = 0  # systematic renames found in this run's feedback and applied to the base references
    inherited_renames: int = 0  # renames adopted in earlier rounds (the active version's lineage), applied first
    # Screening (`training.data.screen`), counted over the training window:
    corrections: int = 0  # accepted corrections screened (one per user and image)
    spam: int = 0  # corrections set aside as copy-paste spam
    over_user_cap: int = 0  # corrections set aside beyond their user's per-run cap
    outvoted: int = 0  # corrections conflicting with their image's majority
    disputed: int = 0  # images set aside because their users disagree with no majority
    users: int = 0  # distinct users behind the feedback kept


@dataclass
class RetrainResult:
    """How a run ended: skipped | dry_run | promoted | not_promoted (failures raise after being recorded)."""

    status: str
    message: str
    data_counts: DataCounts
    run_id: int | None = None
    candidate_version: str | None = None
    active_version: str | None = None  # the version serving when the run started
    metrics: Comparison | None = None  # candidate and active on the held-out sets
    gate: GateDecision | None = None
    recovered_runs: list[int] = field(default_factory=list)  # stale runs this run marked failed
    resumed_run: int | None = None  # the interrupted run whose training this run continued
    renames: list[Rename] = field(default_factory=list)  # systematic renames found in this run's feedback
    inherited_renames: list[InheritedRenames] = field(default_factory=list)  # earlier rounds', oldest first

    def to_dict(self) -> dict:
        """JSON-ready form (the CLI's --json)."""
        return asdict(self)


@dataclass(frozen=True)
class _Plan:
    """What a run trains on and is scored on (step 2's output)."""

    active: ModelVersionInfo | None
    mix: Mix
    held_out: list[FeedbackRow]
    base_eval: CocoCaptions
    counts: DataCounts
    renames: list[Rename]
    inherited: list[InheritedRenames]


def retrain(
    config: RetrainConfig,
    *,
    trainer: Trainer | None = None,
    captioner_factory: CaptionerFactory | None = None,
) -> RetrainResult:
    """One retraining run (see the module docstring); raises `RetrainLocked` if another run is going."""
    lock = run_lock_for(config.engine, Path(config.runs_dir) / "retrain.lock")
    with lock:
        recovered = [] if config.dry_run else _recover_interrupted_runs(config.engine)
        trainer, make_captioner = trainer or default_trainer, captioner_factory or default_captioner_factory(config)
        interrupted = _resumable_run(config) if config.resume and not config.dry_run else None
        result = _run_locked(config, trainer, make_captioner, interrupted) if interrupted else None
        if result is None:
            result = _run_locked(config, trainer, make_captioner)
        result.recovered_runs = recovered
        return result


def _run_locked(config: RetrainConfig, trainer: Trainer, make_captioner: CaptionerFactory,
                interrupted: runs.RunInfo | None = None) -> RetrainResult | None:
    """One run; continuing `interrupted` when given (None back when its plan no longer holds)."""
    # 1. Export feedback and decide whether it is worth a run.
    now = interrupted.started_at if interrupted else utcnow()
    with session_scope(config.engine) as session:
        active = registry.get_active(session)
        since_train, since_new = _feedback_windows(session)
        corrections = storage_feedback.export_corrections(session, config.blobs, since=since_train, until=now,
                                                          consent_default=config.consent_default)
        inherited = lineage_renames(session, active.id if active else None)
    new = {r.image_sha256 for r in corrections if since_new is None or (r.created_at and r.created_at > since_new)}
    active_id = active.id if active else None
    if len(new) < config.min_feedback:
        if interrupted:
            return None  # its window no longer passes (feedback forgotten meanwhile): start afresh
        message = (
            f"too little feedback to retrain: {len(new)} new corrected image(s) since "
            f"{_when(since_new)}; at least {config.min_feedback} needed (set --min-feedback or "
            "CAPBOT_RETRAIN_MIN_FEEDBACK to change this)"
        )
        log.info("retrain skipped", extra={"new_feedback": len(new), "min_feedback": config.min_feedback})
        return RetrainResult(SKIPPED, message, DataCounts(feedback_new=len(new)), active_version=active_id)
    screened = screen_feedback(corrections, config.screen_rules)
    screen_counts = _screen_counts(screened)
    refusal = _refusal(config, screened, new)
    if refusal:
        if interrupted:
            return None
        counts = DataCounts(feedback_new=len(new), **screen_counts)
        return _refuse(config, refusal + _set_aside_text(counts), counts, screened, active_id, since_train, now)
    rows = screened.rows

    # 2. Hold out part of the feedback, adopt the users' renames in the base data, mix the rest with it.
    plan = _plan(config, active, rows, len(new), inherited)
    plan = replace(plan, counts=replace(plan.counts, **screen_counts))
    if interrupted and not _same_plan(interrupted, plan, since_train, active_id):
        return None
    if config.dry_run:
        return RetrainResult(DRY_RUN, _dry_run_message(plan, config), plan.counts, active_version=active_id,
                             renames=plan.renames, inherited_renames=plan.inherited)
    if plan.counts.feedback == 0 or not plan.held_out:
        raise RetrainError(
            f"cannot retrain on {len(rows)} corrected image(s): {plan.counts.feedback} left to train on after "
            f"holding out {len(plan.held_out)} for scoring and dropping {plan.counts.feedback_in_eval_dropped} "
            "that are in the evaluation set; wait for more feedback", reason="no_training_feedback")
    with session_scope(config.engine) as session:
        run = runs.start_run(session, base_version=active_id, feedback_since=since_train,
                             data_counts=asdict(plan.counts), now=now)
    resumed = interrupted.id if interrupted else None
    log.info("retrain started", extra={"run_id": run.id, "active": active_id, "resumes_run": resumed,
                                       **asdict(plan.counts)})
    try:
        result = _train_evaluate_gate(config, run.id, plan, trainer, make_captioner, work_run=resumed or run.id)
    except BaseException as exc:
        _record_failure(config.engine, run.id, exc)
        raise
    result.resumed_run = resumed
    return result


def _plan(config: RetrainConfig, active: ModelVersionInfo | None, rows: list[FeedbackRow], n_new: int,
          inherited: list[InheritedRenames]) -> _Plan:
    base_train, base_eval = _load_base(config)
    train_rows, held_out = split_feedback(rows, config.held_out_fraction, min_held_out=config.min_held_out)
    # Earlier rounds' renames first: the active version speaks them, and new renames are judged against them.
    base_train, base_eval = _inherited(base_train, base_eval, inherited)
    renames = _renames(config, train_rows, base_train)
    if renames:
        rename = renamer(renames)
        base_train, base_eval = _renamed(base_train, rename), _renamed(base_eval, rename)
    eval_hashes = image_hashes(item.path for item in base_eval.items)
    mix = build_mix(train_rows, base_train, feedback_fraction=config.feedback_fraction,
                    eval_hashes=eval_hashes, feedback_repeats=config.feedback_repeats,
                    agreement_cap=config.agreement_cap, seed=config.seed)
    counts = DataCounts(feedback_new=n_new, feedback=mix.counts.feedback, feedback_held_out=len(held_out),
                        feedback_in_eval_dropped=mix.counts.feedback_in_eval_dropped, base=mix.counts.base,
                        base_eval=len(base_eval), renames=len(renames),
                        inherited_renames=len(all_renames(inherited)))
    return _Plan(active, mix, held_out, base_eval, counts, renames, inherited)


def _train_evaluate_gate(config: RetrainConfig, run_id: int, plan: _Plan, trainer: Trainer,
                         make_captioner: CaptionerFactory, *, work_run: int) -> RetrainResult:
    # 3. Fine-tune from the active version (in `work_run`'s directory: an interrupted run's, to resume it).
    active = plan.active
    run_dir = Path(config.runs_dir) / f"run-{work_run}"
    data_dir = run_dir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    write_coco_split(plan.mix.items, data_dir, "train")
    init_model = active.location if active else config.base_model
    job = FineTune(init_model=init_model, parent_version=active.id if active else None, data_dir=data_dir,
                   out_dir=Path(config.models_dir), work_dir=run_dir / "train", epochs=config.epochs,
                   learning_rate=config.learning_rate, batch_size=config.batch_size, seed=config.seed,
                   freeze_encoder=config.freeze_encoder, checkpoint_every=config.checkpoint_every,
                   resume=work_run != run_id)
    candidate_dir = Path(trainer(job))
    candidate_id = _version_of(candidate_dir)

    # 4. Register the candidate (unpromoted), then score both models on the same held-out sets.
    with session_scope(config.engine) as session:
        if registry.get_version(session, candidate_id) is None:  # an interrupted run may have registered it
            registry.register_version(session, version_id=candidate_id, location=str(candidate_dir),
                                      parent_id=job.parent_version,
                                      # what this version learned beyond its parent: later runs inherit it
                                      metrics={"run_id": run_id, "renames": [r.to_dict() for r in plan.renames]})
    scores = _score_both(config, make_captioner, str(candidate_dir), init_model, plan.base_eval,
                         _feedback_eval_set(plan.held_out))

    # 5. Gate, then record everything (and promote) in one transaction.
    decision = decide_promotion(scores, cider_tolerance=config.cider_tolerance,
                                min_feedback_gain=config.min_feedback_gain)
    status = PROMOTED if decision.promote else NOT_PROMOTED
    with session_scope(config.engine) as session:
        registry.update_metrics(session, candidate_id, {**asdict(scores.candidate), "gate": decision.to_dict()})
        if decision.promote:
            if active is None:
                _register_base_for_rollback(session, init_model)
            registry.promote(session, candidate_id)
        runs.finish_run(session, run_id, status=status, result_version=candidate_id,
                        metrics={**asdict(scores), "gate": decision.to_dict(),
                                 "renames": [r.to_dict() for r in plan.renames],
                                 "inherited_renames": [i.to_dict() for i in plan.inherited]},
                        reason=None if decision.promote else decision.reason)
    log.info("retrain finished", extra={"run_id": run_id, "status": status, "candidate": candidate_id,
                                        "reason": decision.reason})
    return RetrainResult(status, decision.reason, plan.counts, run_id=run_id, candidate_version=candidate_id,
                         active_version=active.id if active else None, metrics=scores, gate=decision,
                         renames=plan.renames, inherited_renames=plan.inherited)


def _screen_counts(screened: ScreenedFeedback) -> dict[str, int]:
    counts = screened.counts
    return dict(corrections=counts.corrections, spam=counts.spam, over_user_cap=counts.over_user_cap,
                outvoted=counts.outvoted, disputed=counts.disputed_images, users=counts.users)


def _refusal(config: RetrainConfig, screened: ScreenedFeedback, new: set[str]) -> str | None:
    """Why the screened feedback is not worth training on, or None when it is."""
    reasons = []
    if screened.counts.users < config.min_users:
        reasons.append(f"the feedback left after screening comes from {screened.counts.users} distinct user(s); "
                       f"at least {config.min_users} needed (CAPBOT_RETRAIN_MIN_USERS)")
    kept_new = sum(1 for row in screened.rows if row.image_sha256 in new)
    if kept_new < config.min_feedback:
        reasons.append(f"{kept_new} of the {len(new)} new corrected image(s) are left after screening; "
                       f"at least {config.min_feedback} needed")
    if not reasons:
        return None
    return "refused before training: " + "; ".join(reasons)


def set_aside_summary(counts: DataCounts) -> str:
    """What screening set aside, in words ("12 correction(s) as copy-paste spam, 2 disputed image(s)"), or ""."""
    values = asdict(counts)
    return ", ".join(f"{values[key]} {label}" for key, label in (
        ("spam", "correction(s) as copy-paste spam"), ("over_user_cap", "correction(s) beyond a user's per-run cap"),
        ("outvoted", "correction(s) outvoted by their image's majority"), ("disputed", "disputed image(s)"))
        if values[key])


def _set_aside_text(counts: DataCounts) -> str:
    summary = set_aside_summary(counts)
    return f" (set aside: {summary})" if summary else ""


def _refuse(config: RetrainConfig, message: str, counts: DataCounts, screened: ScreenedFeedback,
            active_id: str | None, since_train: datetime | None, now: datetime) -> RetrainResult:
    """Record a run refused before training as finished (not_promoted, with the reason): like a gate
    refusal, it closes the "new feedback" window, so identical feedback is not refused again and again."""
    log.info("retrain refused before training", extra={"reason": message, **asdict(counts)})
    if config.dry_run:
        return RetrainResult(DRY_RUN, f"dry run: would be {message}", counts, active_version=active_id)
    with session_scope(config.engine) as session:
        run = runs.start_run(session, base_version=active_id, feedback_since=since_train,
                             data_counts=asdict(counts), now=now)
        runs.finish_run(session, run.id, status=NOT_PROMOTED, reason=message,
                        metrics={"refused_before_training": True, "spam_texts": screened.spam_texts})
    return RetrainResult(NOT_PROMOTED, message, counts, run_id=run.id, active_version=active_id)


def _recover_interrupted_runs(engine: Engine) -> list[int]:
    # We hold the run lock, so no live process owns a 'running' run: each one's process died.
    with session_scope(engine) as session:
        stale = [r.id for r in runs.list_runs(session, limit=1000, statuses=(runs.RUNNING,))]
        for run_id in stale:
            runs.finish_run(session, run_id, status=runs.FAILED, reason=INTERRUPTED)
    if stale:
        log.warning("marked interrupted retraining runs failed", extra={"run_ids": stale})
    return stale


def _resumable_run(config: RetrainConfig) -> runs.RunInfo | None:
    """The newest run, when a stop or crash (not an error of its own) ended it after it saved a checkpoint."""
    from training.checkpoint import latest_checkpoint

    with session_scope(config.engine) as session:
        newest = runs.list_runs(session, limit=1)
    if not newest or newest[0].status != runs.FAILED:
        return None
    run = newest[0]
    if run.reason != INTERRUPTED and not (run.reason or "").startswith(STOPPED):
        return None
    work_dir = Path(config.runs_dir) / f"run-{run.id}" / "train"
    return run if latest_checkpoint(work_dir) is not None else None


def _same_plan(interrupted: runs.RunInfo, plan: _Plan, since_train: datetime | None, active_id: str | None) -> bool:
    """Whether re-planning `interrupted`'s window gave its data again (so its checkpoint fits)."""
    same = (interrupted.base_version == active_id and interrupted.feedback_since == since_train
            and interrupted.data_counts == asdict(plan.counts))
    if not same:
        log.warning("the interrupted run's data or active version changed; retraining from scratch",
                    extra={"run_id": interrupted.id})
    return same


def _record_failure(engine: Engine, run_id: int, exc: BaseException) -> None:
    reason = f"failed: {exc}" if isinstance(exc, Exception) else f"{STOPPED}{type(exc).__name__}"
    try:
        with session_scope(engine) as session:
            runs.finish_run(session, run_id, status=runs.FAILED, reason=reason[:2000])
    except Exception:  # the original error matters more; the next run marks this one failed anyway
        log.exception("could not record the failed run", extra={"run_id": run_id})


def _feedback_windows(session) -> tuple[datetime | None, datetime | None]:
    """(train on feedback after this, count "new" feedback after this)."""
    promoted = runs.last_promoted_run(session)
    finished = runs.list_runs(session, limit=1, statuses=(PROMOTED, NOT_PROMOTED))
    return (promoted.started_at if promoted else None, finished[0].started_at if finished else None)


def _load_base(config: RetrainConfig) -> tuple[CocoCaptions, CocoCaptions]:
    if config.base_data is None:
        raise RetrainError(
            "retraining needs a base dataset to mix with feedback and to check the model does not forget: "
            "set CAPBOT_RETRAIN_BASE_DATA (or --base-data) to a COCO-format dataset directory, e.g. one "
            "made by `capbot data coco` or `capbot data synthetic`",
            reason="no_base_data",
        )
    train = load_split(config.base_data, "train")
    held = load_split(config.base_data, config.base_eval_split)
    if config.base_eval_limit is not None:
        held = held.subset(config.base_eval_limit)
    return train, held


def _feedback_eval_set(held_out: list[FeedbackRow]) -> CocoCaptions:
    items = tuple(CocoItem(i, row.image_path, (row.caption,)) for i, row in enumerate(held_out, start=1))
    root = held_out[0].image_path.parent if held_out else Path(".")
    return CocoCaptions(items, Path("<held-out feedback>"), root)


def _score_both(config: RetrainConfig, make_captioner: CaptionerFactory, candidate_location: str,
                active_location: str, base_eval: CocoCaptions, feedback_eval: CocoCaptions) -> Comparison:
    from training.evaluate import CaptionScorer

    base_references = {item.image_id: item.captions for item in base_eval.items}
    scored: dict[str, ModelScores] = {}
    with CaptionScorer(with_meteor=config.with_meteor) as scorer:  # one METEOR JVM for all four evaluations
        for role, location in (("candidate", candidate_location), ("active", active_location)):
            captioner = make_captioner(location)
            try:
                scored[role] = ModelScores(
                    base=_scores(captioner, base_eval, config, scorer),
                    # Held-out corrections often share the very word they are about; CIDEr weighs a word
                    # shared by every reference as zero unless the base references count towards its IDF.
                    feedback=_scores(captioner, feedback_eval, config, scorer, idf_references=base_references),
                )
            finally:
                _close(captioner)
    return Comparison(candidate=scored["candidate"], active=scored["active"])


def _scores(captioner: Captioner, data: CocoCaptions, config: RetrainConfig, scorer, **kwargs) -> Scores:
    from training.evaluate import evaluate_model

    metrics = evaluate_model(captioner, data, batch_size=config.eval_batch_size, scorer=scorer, **kwargs).metrics
    return Scores(cider=metrics.cider, bleu_4=metrics.bleu_4, rouge_l=metrics.rouge_l, meteor=metrics.meteor)


def _renames(config: RetrainConfig, train_rows: list[FeedbackRow], base_train: CocoCaptions) -> list[Rename]:
    if config.rename_rules is None:
        return []
    # Each user who agrees with an image's caption is evidence for its renames (consensus fills supporters).
    edits = [CaptionEdit(row.model_caption, row.caption, user) for row in train_rows
             for user in (row.supporters or (row.user,))]
    renames = find_renames(edits, (item.captions for item in base_train.items), config.rename_rules)
    if renames:
        log.info("feedback renames applied to the base references",
                 extra={"renames": [f"{r.old}->{r.new} ({r.support}/{r.uses}, {r.users} users)" for r in renames]})
    return renames


def _inherited(base_train: CocoCaptions, base_eval: CocoCaptions,
               inherited: list[InheritedRenames]) -> tuple[CocoCaptions, CocoCaptions]:
    if not inherited:
        return base_train, base_eval
    log.info("renames from earlier rounds applied to the base references",
             extra={"renames": [f"{r.old}->{r.new} ({i.version})" for i in inherited for r in i.renames]})
    rename = inherited_renamer(inherited)
    return _renamed(base_train, rename), _renamed(base_eval, rename)


def _renamed(data: CocoCaptions, rename: Callable[[str], str]) -> CocoCaptions:
    items = tuple(CocoItem(i.image_id, i.path, tuple(rename(c) for c in i.captions)) for i in data.items)
    return CocoCaptions(items, data.annotations, data.images_dir)


def _close(captioner: Captioner) -> None:
    close = getattr(captioner, "close", None)
    if callable(close):
        close()


def _register_base_for_rollback(session, base_model: str) -> None:
    """Make the base model (serving while the registry had no active version) the active one, so the first
    promotion retires it and `capbot models rollback` can return to it."""
    from inference.modeldir import has_metadata

    version_id = _version_of(Path(base_model)) if has_metadata(base_model) else base_model  # a hub id
    if registry.get_version(session, version_id) is None:
        registry.register_version(session, version_id=version_id, location=base_model)
    registry.promote(session, version_id)


def _version_of(model_dir: Path) -> str:
    from inference.modeldir import load_metadata

    return load_metadata(model_dir).version


def _when(moment: datetime | None) -> str:
    return "the beginning" if moment is None else f"the last run ({moment:%Y-%m-%d %H:%M} UTC)"


def _dry_run_message(plan: _Plan, config: RetrainConfig) -> str:
    counts = plan.counts
    adopted = ", ".join(f'"{r.old}" -> "{r.new}" ({r.support} of {r.uses} corrections, {r.users} users)'
                        for r in plan.renames)
    return (
        f"dry run: would fine-tune {plan.active.id if plan.active else config.base_model} on {counts.feedback} "
        f"feedback + {counts.base} base images ({counts.feedback_in_eval_dropped} feedback images dropped as "
        f"they are in the evaluation set), then score on {counts.feedback_held_out} held-out feedback and "
        f"{counts.base_eval} base images" + (f"; base references renamed: {adopted}" if plan.renames else "")
        + (f"; renamed in earlier rounds: {_earlier(plan.inherited)}" if plan.inherited else "")
        + _set_aside_text(counts)
    )


def _earlier(inherited: list[InheritedRenames]) -> str:
    return ", ".join(f'"{r.old}" -> "{r.new}" (version {i.version})' for i in inherited for r in i.renames)


def default_trainer(job: FineTune) -> Path:
    """Fine-tune with `training.train.train` on the mix; the candidate is moved to `out_dir/<version>`."""
    from training.train import TrainArgs, train

    n_images = len(load_split(job.data_dir, "train", check_images=False))
    steps = max(1, math.ceil(n_images * job.epochs / job.batch_size))
    result = train(TrainArgs(
        model=job.init_model, out=job.work_dir / "model", run_dir=job.work_dir, data=str(job.data_dir),
        train_split="train", val_split=None,  # retrain scores candidate and active itself, on held-out sets training never sees
        steps=steps, batch_size=job.batch_size, lr=job.learning_rate, warmup_steps=min(100, steps // 10),
        seed=job.seed, made_by="retrain", tensorboard=True, freeze_encoder=job.freeze_encoder,
        save_every=job.checkpoint_every, resume=job.resume,
    ))
    if result.model_dir is None or result.version is None:
        raise RetrainError(f"training in {job.work_dir} produced no model directory", reason="no_model")
    target = job.out_dir / result.version
    if target.is_dir() and not Path(result.model_dir).exists():
        return target  # an interrupted run had finished training and moved its candidate already
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(result.model_dir), str(target))  # a rename on one filesystem: appears whole
    return target


def default_captioner_factory(config: RetrainConfig) -> CaptionerFactory:
    """Local in-process captioners made as the config's captioner spec says, for scoring
    (`CaptionerSpec.scoring`: the served captions, without alternatives and confidence views)."""
    from inference.captioner import LocalCaptioner

    spec = config.captioner.scoring()
    return lambda location: LocalCaptioner(location, spec)
