"""Renames learned in earlier rounds: collected from the active version's lineage, applied again in every run.

A run rewrites the base references with the renames it finds in its feedback (`training.data.renames`), but
each run starts again from the original base data. Without this module the second round's base references
would say "circle" again on every circle while the model being fine-tuned says "ball", and the model would
drift back to "circle". So before looking for new renames, a run applies every rename adopted by the runs
that trained the active version and its ancestors, oldest first, each run's renames together as that run
applied them. New renames are then found against the already-renamed base, so their novelty is judged in
the vocabulary the model speaks now ("ball" -> "sphere" can be found; "circle" -> "ball" is not found twice).

The lineage is the registry's `parent_id` chain from the ACTIVE version. A version trained by a run records
the renames that run adopted in its registry metrics (`renames`, next to `run_id`); versions registered
before that are read from their run's metrics. Because the chain starts at the active version,
`capbot models rollback` changes which renames apply: after rolling back from C to B, the next run applies
the renames of B and its ancestors, not C's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

from sqlalchemy.orm import Session

from storage import registry, runs
from storage.registry import ModelVersionInfo
from training.data.renames import Rename, renamer


@dataclass(frozen=True)
class InheritedRenames:
    """The renames adopted by the run (`run_id`) that trained `version`."""

    version: str
    run_id: int | None
    renames: tuple[Rename, ...]

    def to_dict(self) -> dict:
        """JSON-ready form (run metrics)."""
        return {"version": self.version, "run_id": self.run_id, "renames": [r.to_dict() for r in self.renames]}


def lineage_renames(session: Session, version_id: str | None) -> list[InheritedRenames]:
    """The renames adopted along `version_id`'s lineage (itself, its parent, ...), oldest first; versions
    that adopted none are left out. Empty for None (the configured base model serves)."""
    found: list[InheritedRenames] = []
    seen: set[str] = set()
    while version_id is not None and version_id not in seen:  # `seen`: a hand-edited registry may loop
        seen.add(version_id)
        version = registry.get_version(session, version_id)
        if version is None:
            break
        adopted = _adopted_by(session, version)
        if adopted.renames:
            found.append(adopted)
        version_id = version.parent_id
    return found[::-1]


def inherited_renamer(inherited: Sequence[InheritedRenames]) -> Callable[[str], str]:
    """Rewrite text with each run's renames in turn, oldest first, so a later rename of a renamed word
    (circle -> ball, then ball -> sphere) composes as it did when it was adopted."""
    steps = [renamer(list(step.renames)) for step in inherited]

    def rename(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return rename


def all_renames(inherited: Sequence[InheritedRenames]) -> list[Rename]:
    """Every inherited rename, oldest first (for reports)."""
    return [rename for step in inherited for rename in step.renames]


def _adopted_by(session: Session, version: ModelVersionInfo) -> InheritedRenames:
    run_id = version.metrics.get("run_id")
    recorded = version.metrics.get("renames")
    if recorded is None and isinstance(run_id, int):  # registered before versions recorded their renames
        run = runs.get_run(session, run_id)
        recorded = run.metrics.get("renames") if run is not None and run.result_version == version.id else None
    return InheritedRenames(version.id, run_id if isinstance(run_id, int) else None,
                            tuple(_rename_from(item) for item in recorded or ()))


def _rename_from(record: dict) -> Rename:
    known = {f.name for f in fields(Rename)}
    return Rename(**{key: value for key, value in record.items() if key in known})
