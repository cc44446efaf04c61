"""What each community (a Slack workspace, a Discord server) decided: training consent and image retention.

A community without a row, or with a None column, follows the operator's default (CAPBOT_TRAINING_CONSENT_DEFAULT,
CAPBOT_IMAGE_RETENTION_DAYS). Captions made outside any community (the web page and API, direct messages
outside a server) follow the defaults too.

- Consent is read when data is used, not when it was made: withdrawing it takes the community's images and
  corrections out of every later export and retraining run; giving it back returns them.
- A community's retention can only be shorter than the operator's: the stricter of the two applies
  (`effective_retention`). 0 means keep no images.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, literal, select
from sqlalchemy.orm import Session

from storage._sql import check_platform, insert_ignoring_conflicts
from storage.clock import utcnow
from storage.errors import InvalidArgument
from storage.models import Caption, CommunitySetting

MAX_RETENTION_DAYS = 36_500


@dataclass(frozen=True)
class CommunityChoices:
    """A community's own choices (None: it follows the operator's default)."""

    platform: str
    workspace_id: str
    training_consent: bool | None = None
    image_retention_days: int | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None


def get_choices(session: Session, *, platform: str, workspace_id: str) -> CommunityChoices:
    """The community's choices; all None when it never made any."""
    row = session.get(CommunitySetting, (check_platform(platform), workspace_id))
    if row is None:
        return CommunityChoices(platform, workspace_id)
    return CommunityChoices(platform, workspace_id, row.training_consent, row.image_retention_days,
                            row.updated_at, row.updated_by)


def set_training_consent(session: Session, *, platform: str, workspace_id: str, consent: bool | None,
                         by: str | None = None, now: datetime | None = None) -> None:
    """Record whether the community's images and corrections may train the model (None: the default)."""
    _row(session, platform, workspace_id, now).training_consent = consent
    _touch(session, platform, workspace_id, by, now)


def set_image_retention(session: Session, *, platform: str, workspace_id: str, days: int | None,
                        by: str | None = None, now: datetime | None = None) -> None:
    """Record how many days the community wants uncorrected images kept (0: none; None: the default)."""
    if days is not None and (isinstance(days, bool) or not 0 <= days <= MAX_RETENTION_DAYS):
        raise InvalidArgument(f"retention must be 0 to {MAX_RETENTION_DAYS} days, got {days!r}",
                              reason="bad_retention")
    _row(session, platform, workspace_id, now).image_retention_days = days
    _touch(session, platform, workspace_id, by, now)


def effective_retention(operator_days: int | None, community_days: int | None) -> int | None:
    """The stricter of the two retentions in days (None: no limit)."""
    chosen = [days for days in (operator_days, community_days) if days is not None]
    return min(chosen) if chosen else None


def retention_choices(session: Session) -> dict[tuple[str, str], int]:
    """(platform, workspace id) -> days, for every community that chose a retention."""
    rows = session.execute(select(CommunitySetting.platform, CommunitySetting.workspace_id,
                                  CommunitySetting.image_retention_days)
                           .where(CommunitySetting.image_retention_days.is_not(None)))
    return {(platform, workspace): days for platform, workspace, days in rows}


def consented(default: bool) -> ColumnElement[bool]:
    """SQL: whether the community of the `Caption` row in the enclosing query lets it train the model."""
    choice = (select(CommunitySetting.training_consent)
              .where(and_(CommunitySetting.platform == Caption.platform,
                          CommunitySetting.workspace_id == Caption.workspace_id))
              .correlate(Caption)
              .scalar_subquery())
    return func.coalesce(choice, literal(default)) == literal(True)


def _row(session: Session, platform: str, workspace_id: str, now: datetime | None) -> CommunitySetting:
    check_platform(platform)
    if not workspace_id:
        raise InvalidArgument("community settings need a workspace or server id", reason="no_community")
    insert_ignoring_conflicts(session, CommunitySetting.__table__,
                              {"platform": platform, "workspace_id": workspace_id, "updated_at": now or utcnow()})
    row = session.get(CommunitySetting, (platform, workspace_id), populate_existing=True, with_for_update=True)
    assert row is not None  # inserted above or already there
    return row


def _touch(session: Session, platform: str, workspace_id: str, by: str | None, now: datetime | None) -> None:
    row = session.get(CommunitySetting, (platform, workspace_id))
    assert row is not None
    row.updated_at, row.updated_by = now or utcnow(), by
    session.flush()
