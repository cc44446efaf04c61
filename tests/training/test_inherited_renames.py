"""Renames from earlier rounds: read from the active version's lineage in the registry, applied in order."""

from __future__ import annotations

import pytest

from storage import db, registry, runs
from training.data.renames import Rename
from training.inherited_renames import all_renames, inherited_renamer, lineage_renames


@pytest.fixture
def session(database_url):
    db.upgrade(database_url)
    engine = db.create_engine_for(database_url)
    with db.session_scope(engine) as session:
        yield session
    engine.dispose()


def _rename(old: str, new: str) -> Rename:
    return Rename(old, new, support=8, uses=9, users=4)


def _trained(session, version_id: str, parent: str | None, *renames: Rename, run_id: int | None = None) -> None:
    """Register a version as a retraining run does: its run id and the renames that run adopted."""
    metrics = {"renames": [r.to_dict() for r in renames], "gate": {"promote": True}}
    if run_id is not None:
        metrics["run_id"] = run_id
    registry.register_version(session, version_id=version_id, location=f"/models/{version_id}", parent_id=parent,
                              metrics=metrics)


def _pairs(inherited) -> list[tuple[str, str, str]]:
    return [(step.version, r.old, r.new) for step in inherited for r in step.renames]


def test_the_lineage_gives_each_ancestors_renames_oldest_first(session):
    registry.register_version(session, version_id="base", location="/models/base")
    _trained(session, "r1", "base", _rename("circle", "ball"), _rename("circles", "balls"), run_id=1)
    _trained(session, "r2", "r1", run_id=2)  # a round that adopted no rename
    _trained(session, "r3", "r2", _rename("square", "box"), run_id=3)

    assert _pairs(lineage_renames(session, "r3")) == [
        ("r1", "circle", "ball"), ("r1", "circles", "balls"), ("r3", "square", "box")]
    assert [step.run_id for step in lineage_renames(session, "r3")] == [1, 3]
    assert _pairs(lineage_renames(session, "r1")) == [("r1", "circle", "ball"), ("r1", "circles", "balls")]
    assert lineage_renames(session, "base") == [] and lineage_renames(session, None) == []
    assert lineage_renames(session, "not-registered") == []
    # The full record comes back, not only the words.
    assert all_renames(lineage_renames(session, "r3"))[-1] == _rename("square", "box")


def test_a_rollback_changes_which_renames_the_active_version_inherits(session):
    registry.register_version(session, version_id="base", location="/models/base")
    _trained(session, "r1", "base", _rename("circle", "ball"), run_id=1)
    _trained(session, "r2", "r1", _rename("square", "box"), run_id=2)
    for version_id in ("base", "r1", "r2"):
        registry.promote(session, version_id)
    assert _pairs(lineage_renames(session, registry.get_active(session).id)) == [
        ("r1", "circle", "ball"), ("r2", "square", "box")]

    registry.rollback(session)
    assert _pairs(lineage_renames(session, registry.get_active(session).id)) == [("r1", "circle", "ball")]

    # The next round trains from r1: its child inherits r1's renames and never the rolled-back r2's.
    _trained(session, "r3", "r1", _rename("triangle", "wedge"), run_id=3)
    registry.promote(session, "r3")
    assert _pairs(lineage_renames(session, registry.get_active(session).id)) == [
        ("r1", "circle", "ball"), ("r3", "triangle", "wedge")]
    registry.rollback(session)
    registry.rollback(session)
    assert registry.get_active(session).id == "base" and lineage_renames(session, "base") == []


def test_versions_registered_before_they_recorded_renames_are_read_from_their_run(session):
    run = runs.start_run(session, base_version="base")
    runs.finish_run(session, run.id, status="promoted", result_version="old",
                    metrics={"renames": [_rename("circle", "ball").to_dict()]})
    registry.register_version(session, version_id="old", location="/models/old", metrics={"run_id": run.id})
    other = runs.start_run(session)  # a run that produced another version says nothing about this one
    runs.finish_run(session, other.id, status="promoted", result_version="elsewhere",
                    metrics={"renames": [_rename("square", "box").to_dict()]})
    registry.register_version(session, version_id="stray", location="/models/stray", parent_id="old",
                              metrics={"run_id": other.id})

    assert _pairs(lineage_renames(session, "stray")) == [("old", "circle", "ball")]


def test_a_parent_loop_in_a_hand_edited_registry_ends_the_walk(session):
    _trained(session, "a", "b", _rename("circle", "ball"), run_id=1)
    _trained(session, "b", "a", _rename("square", "box"), run_id=2)
    assert _pairs(lineage_renames(session, "a")) == [("b", "square", "box"), ("a", "circle", "ball")]


def test_each_rounds_renames_apply_in_turn_so_a_renamed_word_can_be_renamed_again(session):
    _trained(session, "r1", None, _rename("circle", "ball"), _rename("circles", "balls"), run_id=1)
    _trained(session, "r2", "r1", _rename("ball", "sphere"), _rename("square", "box"), run_id=2)
    rename = inherited_renamer(lineage_renames(session, "r2"))
    assert rename("A red circle next to two squares and a square") == "A red sphere next to two squares and a box"
    assert rename("two circles") == "two balls"  # users renamed only the singular again
    assert inherited_renamer([])("a circle") == "a circle"


def test_one_rounds_renames_apply_together_as_that_round_applied_them(session):
    # Users of one round swapped two words; applied one after the other, both would end up as one word.
    _trained(session, "r1", None, _rename("red", "blue"), _rename("blue", "red"), run_id=1)
    assert inherited_renamer(lineage_renames(session, "r1"))("a red circle, a blue square") == "a blue circle, a red square"
