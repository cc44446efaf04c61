"""Per-channel auto-caption switches, the one-time privacy notice per channel, and per-user opt-out.

Opt-out means: the bots must not caption that user's posts automatically (check `is_user_opted_out`
before auto-captioning; an explicit `/caption` by the user is their own request), and their corrections
are never exported for training, including ones recorded before they opted out. Opting back in makes
their accepted corrections exportable again. `storage.forget.forget_user` deletes their data outright.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage._sql import check_platform, insert_ignoring_conflicts
from storage.clock import utcnow
from storage.models import ChannelSetting, PrivacyNotice, UserOptOut


def auto_caption_enabled(session: Session, *, platform: str, channel_id: str, default: bool) -> bool:
    """Whether images posted in the channel are captioned automatically; `default` if never set."""
    row = session.get(ChannelSetting, (check_platform(platform), channel_id))
    return default if row is None else row.auto_caption


def set_auto_caption(
    session: Session,
    *,
    platform: str,
    channel_id: str,
    enabled: bool,
    workspace_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Turn automatic captioning in a channel on or off."""
    key = (check_platform(platform), channel_id)
    now = now or utcnow()
    inserted = insert_ignoring_conflicts(
        session,
        ChannelSetting.__table__,
        {"platform": key[0], "channel_id": channel_id, "workspace_id": workspace_id,
         "auto_caption": enabled, "updated_at": now},
    )
    if not inserted:
        row = session.get(ChannelSetting, key, populate_existing=True, with_for_update=True)
        assert row is not None
        row.auto_caption = enabled
        row.updated_at = now
        if workspace_id is not None:
            row.workspace_id = workspace_id
    session.flush()


def channel_switches(session: Session, *, platform: str, workspace_id: str) -> list[tuple[str, bool]]:
    """(channel id, auto-captioning on) for every channel of the community someone switched, by channel id."""
    rows = session.execute(
        select(ChannelSetting.channel_id, ChannelSetting.auto_caption)
        .where(ChannelSetting.platform == check_platform(platform), ChannelSetting.workspace_id == workspace_id)
        .order_by(ChannelSetting.channel_id)
    )
    return [(channel, bool(on)) for channel, on in rows]


def claim_privacy_notice(session: Session, *, platform: str, channel_id: str, now: datetime | None = None) -> bool:
    """True exactly once per channel: the caller then tells the channel what the bot keeps."""
    return insert_ignoring_conflicts(
        session, PrivacyNotice.__table__,
        {"platform": check_platform(platform), "channel_id": channel_id, "noticed_at": now or utcnow()},
    )


def set_user_opt_out(
    session: Session, *, platform: str, user_id: str, opted_out: bool, now: datetime | None = None
) -> None:
    """Opt a user out (True) or back in (False). Idempotent."""
    check_platform(platform)
    if opted_out:
        insert_ignoring_conflicts(
            session, UserOptOut.__table__, {"platform": platform, "user_id": user_id, "opted_out_at": now or utcnow()}
        )
    else:
        session.execute(delete(UserOptOut).where(UserOptOut.platform == platform, UserOptOut.user_id == user_id))


def is_user_opted_out(session: Session, *, platform: str, user_id: str) -> bool:
    """Whether the user opted out (see the module docstring for what that means)."""
    return session.get(UserOptOut, (check_platform(platform), user_id)) is not None
