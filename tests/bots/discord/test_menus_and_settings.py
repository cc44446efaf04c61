"""Context menus, `/caption image url:`, optout and forget, and failures reported to the user."""

from __future__ import annotations

import time

import pytest

from bots import messages
from bots.discord.commands import NOT_A_CAPTION
from storage import captions
from storage.db import session_scope
from tests.bots.captioners import ColourCaptioner
from tests.bots.discord.harness import callback_of, followup_of, person, png, running_bot
from tests.fakes.discord_server import INTERACTION_COMPONENT

EPHEMERAL = 1 << 6


class SwitchableCaptioner(ColourCaptioner):
    """Fails like a bug while `broken` is set."""

    broken = False

    def caption(self, images, options=None):  # noqa: ANN001
        if self.broken:
            raise RuntimeError("simulated engine failure")
        return super().caption(images, options)


@pytest.fixture(scope="module")
def captioner():
    return SwitchableCaptioner(version="colour-v3")


@pytest.fixture(scope="module")
def bot(fake_discord, discord_db, captioner):
    with running_bot(fake_discord, discord_db[2], captioner) as runner:
        yield runner


def replies_to(message_id):
    return lambda r: (
        r.method == "POST" and r.path.endswith("/messages")
        and str((r.json or {}).get("message_reference", {}).get("message_id")) == message_id
    )


def test_caption_image_menu_captions_the_target_message(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    target = fake_discord.message_payload(
        author=person(), attachments=[fake_discord.add_attachment("old.png", png((250, 250, 250)), "image/png")]
    )
    asker = person("dave")
    interaction = fake_discord.message_command("Caption image", target, user=asker)
    assert fake_discord.wait_for(callback_of(interaction), timeout=3).json["type"] == 5
    followup = fake_discord.wait_for(followup_of(fake_discord, interaction))
    assert followup.json["content"].startswith("a white picture")
    caption_id = int(followup.json["components"][0]["components"][0]["custom_id"].rsplit(":", 1)[1])
    with session_scope(engine) as session:
        record = captions.get_caption(session, caption_id)
    assert record.message_ref == target["id"] and record.user_id == asker["id"]


def test_an_attachment_that_is_not_really_an_image_is_refused_with_the_reason(bot, fake_discord):
    renamed = fake_discord.add_attachment("photo.png", b"%PDF-1.4 renamed to .png", "image/png")
    target = fake_discord.message_payload(author=person(), attachments=[renamed])
    interaction = fake_discord.message_command("Caption image", target, user=person())
    answer = fake_discord.wait_for(followup_of(fake_discord, interaction))
    assert "not an image in a supported format" in answer.json["content"]  # the intake's reason, not "went wrong"
    assert answer.json["flags"] & EPHEMERAL and not answer.json.get("components")


def test_caption_image_menu_on_a_message_without_image_is_refused(bot, fake_discord):
    target = fake_discord.message_payload(author=person(), content="just words")
    interaction = fake_discord.message_command("Caption image", target, user=person())
    answer = fake_discord.wait_for(callback_of(interaction), timeout=3)
    assert answer.json["type"] == 4
    assert answer.json["data"]["content"] == messages.NO_IMAGE
    assert answer.json["data"]["flags"] & EPHEMERAL


def test_suggest_menu_opens_the_form_only_for_our_captions(bot, fake_discord):
    posted = fake_discord.post_message(
        author=person(), attachments=[fake_discord.add_attachment("r.png", png((200, 40, 40)), "image/png")]
    )
    reply = fake_discord.wait_for(replies_to(posted["id"]))
    form = fake_discord.message_command("Suggest a better caption", reply.answer, user=person())
    modal = fake_discord.wait_for(callback_of(form), timeout=3)
    assert modal.json["type"] == 9 and "a red picture" in str(modal.json["data"])

    not_ours = fake_discord.message_command("Suggest a better caption", posted, user=person())
    answer = fake_discord.wait_for(callback_of(not_ours), timeout=3)
    assert answer.json["data"]["content"] == NOT_A_CAPTION


def test_caption_url_to_a_private_address_is_refused(bot, fake_discord):
    interaction = fake_discord.slash_command(
        "caption", "image", [{"name": "url", "type": 3, "value": f"{fake_discord.base_url}/attachments/x.png"}],
        user=person(),
    )
    answer = fake_discord.wait_for(followup_of(fake_discord, interaction))
    assert "loopback" in answer.json["content"]
    assert "components" not in answer.json or not answer.json["components"]
    # Only the asker sees the refusal: the public placeholder went first, then an ephemeral follow-up.
    placeholder = f"/webhooks/{fake_discord.app_id}/{interaction['token']}/messages/@original"
    deleted = fake_discord.wait_for(lambda r: r.method == "DELETE" and r.path == placeholder)
    assert answer.json["flags"] & EPHEMERAL and deleted.at <= answer.at


def test_caption_with_neither_attachment_nor_url_is_refused_at_once(bot, fake_discord):
    interaction = fake_discord.slash_command("caption", "image", user=person())
    answer = fake_discord.wait_for(callback_of(interaction), timeout=3)
    assert answer.json["type"] == 4 and answer.json["data"]["content"] == messages.NO_IMAGE


def test_oversized_attachment_is_refused_without_download(bot, fake_discord):
    huge = fake_discord.add_attachment("big.png", png((1, 2, 3)), "image/png", size=10**9)
    interaction = fake_discord.slash_command(
        "caption", "image", [{"name": "attachment", "type": 11, "value": huge["id"]}], attachments=[huge], user=person()
    )
    answer = fake_discord.wait_for(callback_of(interaction), timeout=3)
    assert "limit" in answer.json["data"]["content"]
    assert not any(huge["url"].endswith(hit) for hit in fake_discord.cdn_hits)


def test_optout_silences_auto_captions_and_forget_deletes(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    user = person("erin")
    first = fake_discord.post_message(
        author=user, attachments=[fake_discord.add_attachment("e1.png", png((40, 160, 60)), "image/png")]
    )
    first_reply = fake_discord.wait_for(replies_to(first["id"]))

    optout = fake_discord.slash_command("caption", "optout", user=user)
    answer = fake_discord.wait_for(followup_of(fake_discord, optout))
    assert answer.json["content"] == messages.OPTED_OUT and answer.json["flags"] & EPHEMERAL

    since = time.monotonic()
    silenced = fake_discord.post_message(
        author=user, attachments=[fake_discord.add_attachment("e2.png", png((40, 160, 60)), "image/png")]
    )
    marker = fake_discord.post_message(
        author=person(), attachments=[fake_discord.add_attachment("e3.png", png((40, 60, 200)), "image/png")]
    )
    fake_discord.wait_for(replies_to(marker["id"]), after=since)
    assert fake_discord.requests_matching(replies_to(silenced["id"]), after=since) == []
    assert not any(hit.endswith("/e2.png") for hit in fake_discord.cdn_hits)  # nothing downloaded either

    forget = fake_discord.slash_command("caption", "forget", user=user)
    answer = fake_discord.wait_for(followup_of(fake_discord, forget))
    assert "deleted 1 caption(s)" in answer.json["content"]
    with session_scope(engine) as session:
        assert captions.find_caption_by_message(session, platform="discord", message_ref=first["id"]) is None

    # The forgotten caption's button now says so instead of opening a form.
    button = first_reply.json["components"][0]["components"][0]
    click = fake_discord.interaction(
        INTERACTION_COMPONENT, {"custom_id": button["custom_id"], "component_type": 2}, user=person(),
        message=first_reply.answer,
    )
    answer = fake_discord.wait_for(callback_of(click), timeout=3)
    assert answer.json["type"] == 4 and answer.json["data"]["content"] == messages.CORRECTION_UNKNOWN


def test_a_captioner_bug_is_reported_not_swallowed(bot, fake_discord, captioner):
    captioner.broken = True
    try:
        posted = fake_discord.post_message(
            author=person(), attachments=[fake_discord.add_attachment("x.png", png((1, 1, 1)), "image/png")]
        )
        reply = fake_discord.wait_for(replies_to(posted["id"]))
    finally:
        captioner.broken = False
    assert reply.json["content"] == messages.ERROR
    assert not reply.json.get("components")
