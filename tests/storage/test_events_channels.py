"""Processed events, channel switches and opt-out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from storage import channels, events
from storage.errors import InvalidArgument

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_event_is_claimed_once_per_platform(session):
    assert events.mark_event_processed(session, "slack", "Ev1") is True
    assert events.mark_event_processed(session, "slack", "Ev1") is False
    assert events.mark_event_processed(session, "discord", "Ev1") is True  # another platform's id space
    with pytest.raises(InvalidArgument):
        events.mark_event_processed(session, "slack", "")


def test_claim_survives_across_sessions_and_rollback_releases_it(engine):
    from storage.db import session_scope

    with session_scope(engine) as session:
        assert events.mark_event_processed(session, "slack", "Ev2") is True
    with session_scope(engine) as session:
        assert events.mark_event_processed(session, "slack", "Ev2") is False
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            assert events.mark_event_processed(session, "slack", "Ev3") is True
            raise RuntimeError("handler crashed before commit")
    with session_scope(engine) as session:
        assert events.mark_event_processed(session, "slack", "Ev3") is True


def test_prune_old_events(session):
    events.mark_event_processed(session, "slack", "old", now=T0)
    events.mark_event_processed(session, "slack", "new", now=T0 + timedelta(days=2))
    assert events.prune_processed_events(session, older_than=T0 + timedelta(days=1)) == 1
    assert events.mark_event_processed(session, "slack", "old") is True
    assert events.mark_event_processed(session, "slack", "new") is False


@pytest.mark.parametrize("default", [True, False])
def test_auto_caption_default_and_switch(session, default):
    assert channels.auto_caption_enabled(session, platform="discord", channel_id="C1", default=default) is default
    channels.set_auto_caption(session, platform="discord", channel_id="C1", enabled=not default, workspace_id="G1")
    assert channels.auto_caption_enabled(session, platform="discord", channel_id="C1", default=default) is (not default)
    channels.set_auto_caption(session, platform="discord", channel_id="C1", enabled=default)
    assert channels.auto_caption_enabled(session, platform="discord", channel_id="C1", default=not default) is default
    assert channels.auto_caption_enabled(session, platform="slack", channel_id="C1", default=default) is default


def test_opt_out_and_back_in(session):
    assert not channels.is_user_opted_out(session, platform="slack", user_id="U1")
    channels.set_user_opt_out(session, platform="slack", user_id="U1", opted_out=True)
    channels.set_user_opt_out(session, platform="slack", user_id="U1", opted_out=True)  # idempotent
    assert channels.is_user_opted_out(session, platform="slack", user_id="U1")
    assert not channels.is_user_opted_out(session, platform="discord", user_id="U1")
    channels.set_user_opt_out(session, platform="slack", user_id="U1", opted_out=False)
    assert not channels.is_user_opted_out(session, platform="slack", user_id="U1")
