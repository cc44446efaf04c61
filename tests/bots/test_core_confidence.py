"""The core's caption replies carry confidence and alternatives, sound unsure below the threshold, store both,
let a correction pick an alternative, limit corrections per user, and tell an observer what happened."""

from __future__ import annotations

from functools import partial

import pytest

from bots import messages
from bots.core import BotCore, Origin, ReplyKind
from bots.fetch import fetch_image_bytes
from inference.types import GenerationOptions
from storage import captions, corrections
from storage.db import session_scope
from tests.bots.guessing import GuessingCaptioner
from tests.fakes.http_images import png_bytes

RED, BLUE = png_bytes(color=(200, 40, 40)), png_bytes(color=(40, 60, 200))
ALICE = Origin("slack", "T1", "C1", "U_ALICE")
BOB = Origin("slack", "T1", "C1", "U_BOB")
ALTERNATIVES = GenerationOptions(num_beams=3, num_alternatives=2)


class RecordingObserver:
    """A `CoreObserver` that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def captioned(self, platform, seconds):
        self.calls.append(("captioned", platform))

    def caption_refused(self, platform, reason):
        self.calls.append(("caption_refused", platform, reason))

    def correction(self, platform, accepted, reason):
        self.calls.append(("correction", platform, accepted, reason))

    def rate_limited(self, platform, action):
        self.calls.append(("rate_limited", platform, action))


@pytest.fixture
def make_core(bot_store):
    cores = []

    def build(**kwargs) -> BotCore:
        kwargs.setdefault("options", ALTERNATIVES)
        core = BotCore(GuessingCaptioner(), bot_store, fetch_url=partial(fetch_image_bytes, max_bytes=1000), **kwargs)
        cores.append(core)
        return core

    yield build
    for core in cores:
        core.close()


def caption(core, origin, image, **kwargs):
    return core.caption_requested(origin, image=image, **kwargs).result(timeout=10)


def test_replies_carry_confidence_and_alternatives_and_both_are_stored(make_core, bot_store):
    core = make_core(low_confidence=0.5)
    sure, unsure = caption(core, ALICE, RED), caption(core, ALICE, BLUE)
    assert (sure.text, sure.confidence, sure.unsure) == ("a red picture", 0.9, False)
    assert (unsure.text, unsure.confidence, unsure.unsure) == ("a blue picture", 0.2, True)
    assert unsure.alternatives == ("a blue square", "a blue painting")
    assert unsure.timings_ms["caption"] >= 0 and "queue" in unsure.timings_ms
    with session_scope(bot_store.engine) as session:
        record = captions.get_caption(session, unsure.caption_id)
    assert (record.confidence, record.alternatives) == (0.2, ("a blue square", "a blue painting"))
    assert core.caption_info(unsure.caption_id).alternatives == record.alternatives
    assert core.caption_info(12345) is None


def test_per_request_options_reach_the_captioner(make_core):
    core = make_core()
    one = caption(core, ALICE, BLUE, options=GenerationOptions(num_beams=2, num_alternatives=1))
    assert one.alternatives == ("a blue square",)
    assert caption(core, ALICE, BLUE).alternatives == ("a blue square", "a blue painting")  # the core's default


def test_the_threshold_is_a_setting(make_core):
    assert caption(make_core(low_confidence=0.95), ALICE, RED).unsure
    assert not caption(make_core(low_confidence=0.1), ALICE, BLUE).unsure


def test_unsure_wording_invites_a_correction():
    line = messages.caption_line("a blue picture", "v7", 0.2, unsure=True)
    assert line == f"Maybe: a blue picture\n{messages.UNSURE}\n_model v7 · 20% sure_"
    assert "suggest a better caption" in messages.UNSURE
    assert messages.caption_line("a red picture", "v7", 0.9) == "a red picture\n_model v7 · 90% sure_"
    assert messages.caption_line("a red picture", "v7") == "a red picture\n_model v7_"


def test_a_correction_can_pick_an_alternative_unless_the_text_was_changed(make_core, bot_store):
    core = make_core()
    caption_id = caption(core, ALICE, BLUE).caption_id
    assert core.submit_correction(caption_id, BOB, "a blue picture", alternative=1).kind is ReplyKind.DONE
    assert core.submit_correction(caption_id, ALICE, "a blue tile on a wall", alternative=0).kind is ReplyKind.DONE
    missing = core.submit_correction(caption_id, BOB, "", alternative=7)
    assert (missing.kind, missing.reason) == (ReplyKind.REFUSED, "unknown_alternative")
    with session_scope(bot_store.engine) as session:
        stored = {c.user_id: c.text for c in corrections.corrections_for_caption(session, caption_id)
                  if c.status == "accepted"}
    assert stored == {"U_BOB": "a blue painting", "U_ALICE": "a blue tile on a wall"}


def test_corrections_are_limited_per_user(make_core):
    observer = RecordingObserver()
    core = make_core(correction_rate_limit_per_minute=2, observer=observer)
    caption_id = caption(core, ALICE, BLUE).caption_id
    answers = [core.submit_correction(caption_id, BOB, f"a blue card number {n}") for n in range(3)]
    assert [a.kind for a in answers] == [ReplyKind.DONE, ReplyKind.DONE, ReplyKind.BUSY]
    assert answers[-1].reason == "rate_limited" and 0 < answers[-1].retry_after_s <= 60
    assert "2 corrections" in answers[-1].text
    assert core.submit_correction(caption_id, ALICE, "a blue card on a desk").kind is ReplyKind.DONE
    assert ("rate_limited", "slack", "correction") in observer.calls


def test_the_observer_hears_captions_refusals_corrections_and_limits(make_core):
    observer = RecordingObserver()
    core = make_core(rate_limit_per_minute=2, observer=observer)
    caption_id = caption(core, ALICE, RED).caption_id
    caption(core, ALICE, b"not an image")  # refused: gives its slot back
    caption(core, ALICE, RED)
    caption(core, ALICE, RED)
    core.submit_correction(caption_id, BOB, "see https://example.com")
    core.submit_correction(caption_id, BOB, "a red square on white")
    assert observer.calls == [
        ("captioned", "slack"),
        ("caption_refused", "slack", "not_image"),
        ("captioned", "slack"),
        ("rate_limited", "slack", "caption"),
        ("correction", "slack", False, "link"),
        ("correction", "slack", True, "accepted"),
    ]
