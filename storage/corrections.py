"""Corrections: users' better captions, validated on the way in so nothing invalid is stored or exported.

Rules (each refusal is a `CorrectionRefused` with a `.reason` code and a message fit to show the user):
- unknown_caption: the caption id does not exist.
- mention: Slack/Discord mentions (`<@U123>`, `<@!1>`, `<@&1>`, `<#C1>`, `<!here>`, `@everyone`, `@here`,
  `@channel`) are refused, not stripped, because dropping them silently changes the meaning.
- link: URLs (`http://`, `https://`, `www.`, Slack `<http...|label>`) are refused.
- Characters by Unicode rules: terminal escape sequences go whole (no `[31m` left), control characters
  become spaces, bidi controls (RLO, isolates, marks) and lone surrogates go, and other format characters
  (zero-width joiner and non-joiner, tag characters) stay only inside a grapheme cluster (the `regex`
  module's `\X`), so emoji families, flags and scripts' ligatures stay whole; NFC throughout.
- Markup is removed whole: script, style and other hidden elements with their content, HTML comments, then
  HTML tags, Markdown emphasis (`*`, `_`, `~`, `` ` ``, `||`), quotes (`>`), custom emoji (`<:name:id>`);
  whitespace is collapsed and the text trimmed. Mentions and links are checked before and after.
- empty / too_short / too_long: after cleaning, fewer than MIN_LENGTH or more than MAX_LENGTH characters.
- no_words: no letters at all.
- same_as_caption: equal to the model's caption ignoring case, spacing and final punctuation.

Statuses: accepted (new), overridden (the same user on the same platform corrected the same image again
later, through this caption or another caption of it; the newer one wins), withdrawn (the user took it back).
A confirmation ("this caption is right", `storage.confirmations`) is the same kind of answer: it overrides the
user's correction of the image and a later correction overrides it.
So one user holds at most one accepted answer per image, however many times they upload and correct it
(the partial unique index uq_corrections_one_accepted holds it in the database, also for simultaneous ones);
export uses the latest accepted correction per image and counts the distinct users behind each.
"""

from __future__ import annotations

import logging
import re
import unicodedata

import regex
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage._sql import check_platform, is_row_id
from storage.clock import utcnow
from storage.errors import CorrectionNotFound, CorrectionRefused
from storage.models import Caption, Correction

log = logging.getLogger(__name__)

MIN_LENGTH = 3
MAX_LENGTH = 300
_RAW_LIMIT = 4 * MAX_LENGTH  # refuse absurd input before running regexes over it

_MENTION = re.compile(
    r"<@[!&]?[A-Za-z0-9]+(?:\|[^>]*)?>"  # users / roles (<@U123>, <@!123>, <@&123>)
    r"|<#[A-Za-z0-9]+(?:\|[^>]*)?>"  # channels
    r"|<!(?!--)[^>]*>"  # <!here>, <!channel>, <!subteam^S1|@team>, <!date^...> (not an HTML comment)
    r"|(?<![\w@])@(?:everyone|here|channel)\b",
    re.IGNORECASE,
)
_LINK = re.compile(r"https?://|\bwww\.[a-z0-9-]+\.|<[a-z][a-z0-9+.-]*:[^>\s]*[/|][^>]*>|\bmailto:", re.IGNORECASE)
# Terminal escape sequences, whole: CSI (colours, cursor moves), OSC (window titles, links), DCS/SOS/PM/APC
# strings, and other two-character escapes; 7-bit (ESC ...) and 8-bit (CSI, OSC) forms.
_TERMINAL_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Elements whose content is code or hidden text, not words about the picture: removed with their content
# (to the end of the text when never closed), as are HTML comments.
_HIDDEN_MARKUP = re.compile(
    r"<(script|style|iframe|object|embed|noscript|template|svg|math|textarea|title)\b[^>]*>.*?(?:</\1\s*>|$)"
    r"|<!--.*?(?:-->|$)",
    re.IGNORECASE | re.DOTALL,
)
_GRAPHEME = regex.compile(r"\X")
# Characters that change the direction text is shown in: out, so the stored text reads as it was typed.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CUSTOM_EMOJI = re.compile(r"<a?:\w+:\d+>")
_DISCORD_TIMESTAMP = re.compile(r"<t:\d+(?::[a-zA-Z])?>")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_EMPHASIS = re.compile(r"\|\||\*+|~~+|`+|(?<!\w)_+|_+(?!\w)")
_QUOTE = re.compile(r"(?m)^\s*>+\s?")
_SPACE = re.compile(r"\s+")
_TRAILING_PUNCT = re.compile(r"[\s.!?,;:]+$")
_STORE_ATTEMPTS = 8  # each lost race means another correction by the same user of the same image committed first


@dataclass(frozen=True)
class CorrectionRecord:
    """A stored correction."""

    id: int
    caption_id: int
    image_sha256: str
    platform: str
    user_id: str
    text: str
    status: str  # accepted | withdrawn | overridden
    created_at: datetime
    status_changed_at: datetime | None = None
    kind: str = "correction"  # or "confirmation": the user said the caption is right (storage.confirmations)


def _record(row: Correction) -> CorrectionRecord:
    return CorrectionRecord(
        id=row.id,
        caption_id=row.caption_id,
        image_sha256=row.image_sha256,
        platform=row.platform,
        user_id=row.user_id,
        text=row.text,
        status=row.status,
        created_at=row.created_at,
        status_changed_at=row.status_changed_at,
        kind=row.kind or "correction",
    )


def as_record(row: Correction) -> CorrectionRecord:
    """A stored row as the record callers get (for modules that store answers of another kind)."""
    return _record(row)


def _refuse(reason: str, message: str) -> CorrectionRefused:
    return CorrectionRefused(message, reason=reason)


def comparable(text: str) -> str:
    """A text as two answers about one image are compared (a correction with the model's caption, users'
    corrections with each other): case-folded, spaces collapsed, final punctuation dropped."""
    return _TRAILING_PUNCT.sub("", _SPACE.sub(" ", text).strip()).casefold()


def clean_correction_text(text: str, model_caption: str | None = None) -> str:
    """Validate and clean a proposed caption; returns the text to store or raises `CorrectionRefused`."""
    if not isinstance(text, str) or not text.strip():
        raise _refuse("empty", "Please type a caption.")
    if len(text) > _RAW_LIMIT:
        raise _refuse("too_long", f"Please keep the caption under {MAX_LENGTH} characters.")
    text = _visible_characters(_TERMINAL_ESCAPE.sub("", unicodedata.normalize("NFC", text)))
    _refuse_mentions_and_links(text)
    text = _without_markup(text)
    _refuse_mentions_and_links(text)  # removing markup can join a link ("http<b></b>://")
    text = _SPACE.sub(" ", text).strip()
    if not text:
        raise _refuse("empty", "Please type a caption.")
    if len(text) < MIN_LENGTH:
        raise _refuse("too_short", f"Please write at least {MIN_LENGTH} characters.")
    if len(text) > MAX_LENGTH:
        raise _refuse("too_long", f"Please keep the caption under {MAX_LENGTH} characters.")
    if not any(ch.isalpha() for ch in text):
        raise _refuse("no_words", "Please describe the picture in words.")
    if model_caption is not None and comparable(text) == comparable(model_caption):
        raise _refuse("same_as_caption", "That is the same as the bot's caption; nothing to correct.")
    return text


def _refuse_mentions_and_links(text: str) -> None:
    if _MENTION.search(text):
        raise _refuse("mention", "Please leave out mentions of people, roles or channels.")
    if _LINK.search(text):
        raise _refuse("link", "Please leave out links; describe the picture in words.")


def _visible_characters(text: str) -> str:
    """`text` by Unicode rules: control characters become spaces (they separated words), bidi controls and
    lone surrogates go, and other format characters (zero-width joiners and non-joiners, tag characters)
    stay only inside a grapheme cluster, where they build an emoji, a flag or a ligature of the script."""
    kept = []
    for cluster in _GRAPHEME.findall(text):
        for position, char in enumerate(cluster):
            category = unicodedata.category(char)
            if category == "Cc":
                kept.append(" ")
            elif category == "Cs" or char in _BIDI_CONTROLS or (category == "Cf" and position == 0):
                continue
            else:
                kept.append(char)
    return "".join(kept)


def _without_markup(text: str) -> str:
    """Markup removed whole: hidden elements with their content (again until none is left, so pieces cannot
    join into a new one), then tags, custom emoji, timestamps and quote marks, then emphasis."""
    while True:
        stripped = _HIDDEN_MARKUP.sub("", text)
        if stripped == text:
            break
        text = stripped
    for pattern in (_CUSTOM_EMOJI, _DISCORD_TIMESTAMP, _HTML_TAG, _QUOTE):
        text = pattern.sub(" ", text)
    return _EMPHASIS.sub("", text)


def record_correction(
    session: Session,
    *,
    caption_id: int,
    user_id: str,
    text: str,
    platform: str | None = None,
    now: datetime | None = None,
) -> CorrectionRecord:
    """Validate and store a correction; older accepted ones by the same user for that image are overridden.

    `platform` defaults to the caption's platform. Raises `CorrectionRefused` (nothing stored).
    """
    caption = session.get(Caption, caption_id) if is_row_id(caption_id) else None
    if caption is None:
        raise _refuse("unknown_caption", "That caption no longer exists, so it cannot be corrected.")
    if not user_id:
        raise _refuse("unknown_user", "Corrections need to come from a user.")
    try:
        cleaned = clean_correction_text(text, caption.text)
    except CorrectionRefused as exc:
        log.info("correction refused", extra={"caption_id": caption.id, "reason": exc.reason})
        raise
    now = now or utcnow()
    platform = check_platform(platform or caption.platform)
    row = store_accepted_answer(session, caption, platform=platform, user_id=user_id, text=cleaned, now=now)
    log.info("correction accepted", extra={"caption_id": caption.id, "correction_id": row.id})
    return _record(row)


def store_accepted_answer(session: Session, caption: Caption, *, platform: str, user_id: str, text: str,
                          now: datetime, kind: str = "correction") -> Correction:
    """Store the user's answer about `caption`'s image (a correction, or a confirmation: `kind`) as their one
    accepted answer, overriding the one they had. Each try runs in a savepoint: when the same user's
    simultaneous answer commits first, the unique index uq_corrections_one_accepted refuses ours, and the
    next try overrides that one too."""
    for attempt in range(1, _STORE_ATTEMPTS + 1):
        try:
            with session.begin_nested():  # a savepoint: a lost race undoes only this attempt
                return _replace_accepted(session, caption, platform, user_id, text, now, kind)
        except IntegrityError:
            if attempt == _STORE_ATTEMPTS:
                raise
            log.info("simultaneous answer by the same user, storing again", extra={"caption_id": caption.id})
    raise AssertionError("unreachable")  # the loop returns or raises


def _replace_accepted(session: Session, caption: Caption, platform: str, user_id: str, text: str,
                      now: datetime, kind: str) -> Correction:
    """Override the user's accepted answer about the image (if any), then add the new accepted one."""
    session.execute(
        update(Correction)
        .where(
            Correction.image_sha256 == caption.image_sha256,
            Correction.platform == platform,
            Correction.user_id == user_id,
            Correction.status == "accepted",
        )
        .values(status="overridden", status_changed_at=now)
    )
    row = Correction(caption_id=caption.id, image_sha256=caption.image_sha256, platform=platform, user_id=user_id,
                     text=text, status="accepted", kind=kind, created_at=now)
    session.add(row)
    session.flush()
    return row


def withdraw_correction(
    session: Session, correction_id: int, *, user_id: str, now: datetime | None = None
) -> CorrectionRecord:
    """Withdraw the user's own correction (it stops counting for export). Withdrawing twice is harmless."""
    row = session.get(Correction, correction_id) if is_row_id(correction_id) else None
    if row is None or row.user_id != user_id:
        raise CorrectionNotFound("There is no correction of yours with that id.", reason="unknown_correction")
    if row.status != "withdrawn":
        row.status = "withdrawn"
        row.status_changed_at = now or utcnow()
        session.flush()
    return _record(row)


def get_correction(session: Session, correction_id: int) -> CorrectionRecord | None:
    """The correction with that id, or None."""
    row = session.get(Correction, correction_id) if is_row_id(correction_id) else None
    return None if row is None else _record(row)


def corrections_for_caption(session: Session, caption_id: int) -> list[CorrectionRecord]:
    """Every correction of one caption (any status), oldest first."""
    if not is_row_id(caption_id):
        return []
    rows = session.scalars(select(Correction).where(Correction.caption_id == caption_id).order_by(Correction.id))
    return [_record(row) for row in rows]
