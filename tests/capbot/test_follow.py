"""Serving follows the registry: a promotion or rollback made elsewhere swaps the serving model."""

from __future__ import annotations

from capbot.app import serving_model
from capbot.follow import RegistryFollower
from inference.model_init import init_model
from inference.modeldir import load_metadata
from storage import db, registry


def _register(services, model_dir):
    version = load_metadata(model_dir).version
    with db.session_scope(services.engine) as session:
        registry.register_version(session, version_id=version, location=str(model_dir))
    return version


def _follower(services, tiny_model_dir):
    return RegistryFollower(services.captioner, lambda: serving_model(services.engine, services.settings),
                            current=str(tiny_model_dir))


def test_promotion_and_rollback_are_followed(services, tiny_model_dir, tmp_path, photo_bytes):
    first = _register(services, init_model(tmp_path / "a", preset="tiny", seed=1) and tmp_path / "a")
    second = _register(services, init_model(tmp_path / "b", preset="tiny", seed=2) and tmp_path / "b")
    follower = _follower(services, tiny_model_dir)
    assert follower.check_once() is False  # nothing active yet: the configured model keeps serving

    with db.session_scope(services.engine) as session:
        registry.promote(session, first)
        registry.promote(session, second)
    assert follower.check_once() is True
    assert services.captioner.model_version == second
    assert services.captioner.caption([photo_bytes])[0].model_version == second

    with db.session_scope(services.engine) as session:
        registry.rollback(session)
    assert follower.check_once() is True
    assert services.captioner.model_version == first


def test_broken_active_version_keeps_old_model_serving(services, tiny_model_dir, tmp_path):
    before = services.captioner.model_version
    with db.session_scope(services.engine) as session:
        registry.register_version(session, version_id="broken", location=str(tmp_path / "missing"))
        registry.promote(session, "broken")
    follower = _follower(services, tiny_model_dir)
    assert follower.check_once() is False
    assert services.captioner.model_version == before


def test_old_event_ids_are_forgotten_at_start(services):
    from datetime import datetime, timedelta, timezone

    from capbot.app import forget_old_events
    from storage import events

    long_ago = datetime.now(timezone.utc) - timedelta(days=30)
    with db.session_scope(services.engine) as session:
        events.mark_event_processed(session, "slack", "Ev-old", now=long_ago)
        events.mark_event_processed(session, "slack", "Ev-new")
    assert forget_old_events(services.engine) == 1
    with db.session_scope(services.engine) as session:
        assert events.mark_event_processed(session, "slack", "Ev-old") is True  # forgotten, so new again
        assert events.mark_event_processed(session, "slack", "Ev-new") is False
