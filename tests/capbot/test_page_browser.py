"""The demo page and the operator page in a real headless Chromium (Debian's, driven by Playwright), served by
`capbot run`: at desktop size, at a phone's 390x844, and by keyboard only.

Without Chromium or Playwright these tests skip, except in CI (`CI` set), where they fail: `.ci/run`
installs Chromium. Screenshots go to $CAPBOT_TEST_ARTIFACTS/browser/ (default: capbot-test-artifacts/browser/
in the system temporary directory), never into the checkout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage import captions, corrections, db, registry
from storage.corrections import clean_correction_text
from tests.capbot.capbot_server import running_capbot
from tests.fakes.http_images import ImageServer, png_bytes

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # No calls home: this machine's network is closed, and a test must not depend on one.
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(os.environ.get("CAPBOT_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "capbot-test-artifacts") / "browser"
TIMEOUT_MS = 90_000  # a caption on a loaded 2-core machine
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
ADMIN_KEY = "browser-operator-key"


def chromium_or_skip() -> str:
    path = os.environ.get("CAPBOT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        why = "headless Chromium or Playwright is missing (apt-get install chromium; pip install playwright)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {why}")
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def browser():
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    # Many tests share one server, one client address: give them room under the per-user limits.
    with running_capbot(tmp_path_factory.mktemp("browser-server"), tiny_model_dir, CAPBOT_RATE_LIMIT_PER_MINUTE="60",
                        CAPBOT_CORRECTION_RATE_LIMIT_PER_MINUTE="60") as running:
        yield running


def open_page(browser, url: str, **context_options):
    """A new browser context and page on `url`, recording every request the page makes."""
    context = browser.new_context(**{"viewport": {"width": 1000, "height": 900}, **context_options})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    opened.requests_seen = []  # type: ignore[attr-defined]
    opened.on("request", lambda r: opened.requests_seen.append(r.url))  # type: ignore[attr-defined]
    opened.goto(url)
    return context, opened


def screenshot(page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def page(browser, server, request):
    context, opened = open_page(browser, server.url)
    yield opened
    screenshot(opened, request.node.name)
    context.close()


@pytest.fixture
def photo_path() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / "chelsea.png"


def stored_caption(server, caption_id):
    engine = db.create_engine_for(server.database_url)
    try:
        with db.session_scope(engine) as session:
            return captions.get_caption(session, caption_id), corrections.corrections_for_caption(session, caption_id)
    finally:
        engine.dispose()


def upload(page, path: Path) -> dict:
    """Pick a file in the page's file input; returns the API's answer the page received."""
    with page.expect_response(lambda r: "/v1/captions" in r.url and r.request.method == "POST") as answer:
        page.set_input_files("#file", str(path))
    page.wait_for_selector("#result", state="visible")
    return answer.value.json()


def test_upload_a_real_photo_and_see_its_caption(page, server, photo_path, request):
    body = upload(page, photo_path)
    caption = page.text_content("#caption")
    assert caption == body["text"] and caption
    assert page.get_attribute("#preview", "alt") == caption  # the image carries its caption
    # Confidence in words a reader can act on; the number, and what it is not, on hover.
    assert page.text_content("#confidence") == ("not sure" if body["unsure"] else "sure")
    title = page.get_attribute("#confidence", "title")
    assert f"{body['confidence']:.2f}" in title and "not the chance that the caption is right" in title
    assert page.text_content("#model-version") == body["model_version"]
    assert int(page.text_content("#latency")) >= 0
    assert page.is_visible("#unsure") == body["unsure"]
    alternatives = page.locator("#alternative-list button").all_text_contents()
    assert alternatives == body["alternatives"]
    # This browser's recent captions, with the thumbnail's alt text.
    page.wait_for_selector("#recent-list img")
    assert page.get_attribute("#recent-list img", "alt") == caption
    record, _ = stored_caption(server, body["id"])
    assert record.text == caption and record.platform == "web"
    # Self-contained: nothing but the server itself (and the page's own blob/data URLs) was requested.
    assert all(url.startswith((server.url, "blob:", "data:")) for url in page.requests_seen), page.requests_seen
    assert server.url + "favicon.svg" in page.requests_seen
    screenshot(page, f"{request.node.name}-page")
    # The API documentation is linked, and works offline: Swagger UI from the server's own assets.
    page.click("text=API documentation")
    page.wait_for_selector(".swagger-ui .opblock-summary-path", state="attached")
    assert "/v1/captions" in page.text_content(".swagger-ui")
    assert all(url.startswith((server.url, "blob:", "data:")) for url in page.requests_seen), page.requests_seen


def test_pick_an_alternative_and_submit_it_as_a_correction(page, server, photo_path):
    body = upload(page, photo_path)
    assert body["alternatives"], "the tiny model's beam search should offer alternatives"
    first = page.locator("#alternative-list button").first
    first.click()
    assert first.get_attribute("aria-pressed") == "true"
    assert page.input_value("#correction") == body["alternatives"][0]
    page.click("#correction-button")
    page.wait_for_selector("#correction-status.ok")
    assert "Thanks" in page.text_content("#correction-status")
    _, stored = stored_caption(server, body["id"])
    assert [c.text for c in stored] == [clean_correction_text(body["alternatives"][0], body["text"])]


def test_a_refused_correction_shows_the_reason(page, photo_path):
    upload(page, photo_path)
    page.fill("#correction", "see https://example.com for a better one")
    page.click("#correction-button")
    page.wait_for_selector("#correction-status.error")
    assert "links" in page.text_content("#correction-status") and "(link)" in page.text_content("#correction-status")


def test_drop_a_text_file_and_see_the_reason(page):
    assert page.is_visible("#drop-hint") and "Ctrl+V" in page.text_content("#drop-hint")  # a mouse and keyboard here
    with page.expect_response(lambda r: "/v1/captions" in r.url) as answer:
        page.evaluate("""() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["just some notes, not a picture"], "notes.txt", { type: "text/plain" }));
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""")
    assert answer.value.status == 422
    page.wait_for_selector("#status.error")
    status = page.text_content("#status")
    assert "not an image" in status and "(not_image)" in status
    assert page.is_hidden("#result") and page.is_hidden("#preview-figure")  # nothing was shown before


def test_paste_a_private_url_and_see_it_refused(page):
    with ImageServer() as images:
        private = images.url("/image.png")
        with page.expect_response(lambda r: "/v1/captions" in r.url) as answer:
            page.evaluate("""(url) => {
                const transfer = new DataTransfer();
                transfer.setData("text/plain", url);
                document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
            }""", private)
        assert answer.value.status == 422
        page.wait_for_selector("#status.error")
    status = page.text_content("#status")
    assert "127.0.0.1" in status and "private" in status and "(private_address)" in status
    assert page.input_value("#url") == private
    # Only the browser's own preview reached the image server: capbot refused before connecting.
    assert all("Chrome" in r.headers.get("user-agent", "") for r in images.state.requests), images.state.requests


def test_paste_an_image(page):
    with page.expect_response(lambda r: "/v1/captions" in r.url) as answer:
        page.evaluate("""async () => {
            const canvas = document.createElement("canvas");
            canvas.width = 64; canvas.height = 48;
            const draw = canvas.getContext("2d");
            draw.fillStyle = "#2050d0"; draw.fillRect(0, 0, 64, 48);
            draw.fillStyle = "#f0c020"; draw.beginPath(); draw.arc(32, 24, 14, 0, 2 * Math.PI); draw.fill();
            const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
            const transfer = new DataTransfer();
            transfer.items.add(new File([blob], "screenshot.png", { type: "image/png" }));
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
        }""")
    assert answer.value.status == 201
    page.wait_for_selector("#result", state="visible")
    assert page.get_attribute("#preview", "alt") == answer.value.json()["text"]


def tab_to(page, selector: str, presses: int = 30) -> None:
    """Press Tab until the focused element matches `selector` (fails if it never does)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(selector) => document.activeElement.matches(selector)", selector):
            return
    pytest.fail(f"{selector} could not be reached with Tab")


def test_keyboard_only(page, server, photo_path):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
    # Playwright turns file-chooser interception on without waiting for the browser (fire and forget), so a
    # key pressed right after `expect_file_chooser` can open an unintercepted chooser and no event comes (seen
    # once in a CI run): listening from the start turns interception on before any key is pressed.
    page.on("filechooser", lambda _chooser: None)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file"  # the first stop: choosing an image
    with page.expect_file_chooser() as chooser:
        page.keyboard.press(" ")
    with page.expect_response(lambda r: "/v1/captions" in r.url) as answer:
        chooser.value.set_files(str(photo_path))
    body = answer.value.json()
    page.wait_for_selector("#result", state="visible")
    assert page.evaluate("document.activeElement.id") == "caption"  # focus moves to the new caption
    tab_to(page, "#copy-button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#correction-status.ok")
    assert page.evaluate("navigator.clipboard.readText()") == body["text"]
    tab_to(page, "#confirm-button")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('correction-status').textContent.includes('right')")
    tab_to(page, ".alternative")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "correction"
    assert page.input_value("#correction") == body["alternatives"][0]
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "correction-button"
    page.keyboard.press("Enter")
    page.wait_for_selector("#correction-status.ok")


def test_on_a_phone_the_caption_comes_into_view(browser, server, photo_path, request):
    context, phone = open_page(browser, server.url, **PHONE)
    try:
        # A touch screen has nothing to drop onto and no Ctrl+V: no hints about them, the camera instead.
        assert phone.is_hidden("#drop-hint") and phone.is_visible("text=Take a photo or choose an image")
        body = upload(phone, photo_path)
        phone.wait_for_selector("#recent-list li")
        phone.wait_for_function("() => document.activeElement.id === 'caption'")
        # The caption is on screen without scrolling by hand.
        for selector in ("#caption", "#confirm-button"):  # the caption, and what to do about it
            box = phone.locator(selector).bounding_box()
            assert box and 0 <= box["y"] and box["y"] + box["height"] <= 844, (selector, box)
        assert phone.text_content("#caption") == body["text"]
        screenshot(phone, f"{request.node.name}-after-caption", full_page=False)  # what the user sees
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
        for selector in ("#file", "#url", "#url-button", "#copy-button", "#confirm-button", "#correction",
                         "#correction-button"):
            box = phone.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        screenshot(phone, request.node.name)
    finally:
        context.close()


def test_options_follow_the_beams_and_say_what_is_wrong(page, server):
    page.click("#options summary")
    page.fill("#beams", "1")
    assert page.input_value("#alternatives") == "0"  # one beam has no other guesses to offer
    with page.expect_response(lambda r: "/v1/captions" in r.url) as answer:
        page.set_input_files("#file", files=[{"name": "red.png", "mimeType": "image/png",
                                              "buffer": png_bytes((64, 48), (200, 40, 40))}])
    assert answer.value.status == 201, answer.value.text()
    assert "beams=1" in answer.value.url and "alternatives=0" in answer.value.url
    page.wait_for_selector("#result", state="visible")
    assert page.is_hidden("#alternatives-box") and page.text_content("#status") == ""
    # Out of range: a sentence next to the options, and no request at all.
    page.fill("#beams", "20")
    sent = len(page.requests_seen)
    page.set_input_files("#file", files=[{"name": "blue.png", "mimeType": "image/png",
                                          "buffer": png_bytes((64, 48), (40, 40, 200))}])
    page.wait_for_selector("#options-status.error")
    assert page.text_content("#options-status") == "Beams must be a whole number from 1 to 8."
    assert page.evaluate("document.activeElement.id") == "beams"
    assert not any("/v1/captions" in url for url in page.requests_seen[sent:])
    assert page.text_content("#caption") == answer.value.json()["text"]  # the last result is still shown


def test_copy_confirm_and_an_edited_pick_is_no_longer_highlighted(page, server, photo_path):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
    body = upload(page, photo_path)
    page.click("#copy-button")
    page.wait_for_selector("#correction-status.ok")
    assert page.evaluate("navigator.clipboard.readText()") == body["text"]
    first = page.locator("#alternative-list button").first
    first.click()
    assert first.get_attribute("aria-pressed") == "true"
    page.keyboard.type(" on a sofa")
    assert first.get_attribute("aria-pressed") == "false"  # the text is now the user's own
    page.click("#confirm-button")
    page.wait_for_function("() => document.getElementById('correction-status').textContent.includes('right')")
    _, stored = stored_caption(server, body["id"])
    assert [(c.kind, c.text, c.status) for c in stored] == [("confirmation", body["text"], "accepted")]
    # Sending the caption back unchanged says the same thing, instead of being refused as "same as caption".
    page.fill("#correction", body["text"])
    page.click("#correction-button")
    page.wait_for_selector("#correction-status.ok")
    assert "right" in page.text_content("#correction-status")


def test_a_failed_caption_keeps_the_last_result_and_recent_ones_reopen(page, server, photo_path):
    first = upload(page, photo_path)
    second = upload_bytes(page, png_bytes((96, 64), (30, 160, 60)), "green.png")
    assert page.text_content("#caption") == second["text"]
    with page.expect_response(lambda r: "/v1/captions" in r.url) as refused:
        page.set_input_files("#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not a picture"}])
    assert refused.value.status == 422
    page.wait_for_selector("#status.error")
    # The error is said, and the last good result stays on screen with its own picture.
    assert page.is_visible("#result") and page.text_content("#caption") == second["text"]
    assert page.get_attribute("#preview", "alt") == second["text"] and page.is_visible("#preview")
    # The first caption, picked from this browser's list, opens again and takes a correction.
    page.click(f"#recent-list button[data-id='{first['id']}']")
    page.wait_for_function("(text) => document.getElementById('caption').textContent === text", arg=first["text"])
    assert page.get_attribute(f"#recent-list button[data-id='{first['id']}']", "aria-current") == "true"
    page.fill("#correction", "a tabby cat looking up")
    page.click("#correction-button")
    page.wait_for_selector("#correction-status.ok")
    _, stored = stored_caption(server, first["id"])
    assert [c.text for c in stored] == ["a tabby cat looking up"]


def upload_bytes(page, data: bytes, name: str) -> dict:
    with page.expect_response(lambda r: "/v1/captions" in r.url and r.request.method == "POST") as answer:
        page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    assert answer.value.status == 201, answer.value.text()
    page.wait_for_function("(text) => document.getElementById('caption').textContent === text",
                           arg=answer.value.json()["text"])
    return answer.value.json()


# --- the operator's view ---


@pytest.fixture(scope="module")
def operator_server(tmp_path_factory, tiny_model_dir):
    """A server of its own (promoting changes what it serves), with an admin key, two captioned images and two
    registered versions of the tiny model with gate metrics a week apart."""
    root = tmp_path_factory.mktemp("operator-server")
    with running_capbot(root, tiny_model_dir, CAPBOT_ADMIN_KEY=ADMIN_KEY) as running:
        import httpx

        for colour in ((200, 40, 40), (40, 40, 200)):
            made = httpx.post(running.url + "v1/captions", timeout=60,
                              files={"file": ("shape.png", png_bytes((120, 90), colour), "image/png")})
            assert made.status_code == 201, made.text
        engine = db.create_engine_for(running.database_url)
        start = datetime(2026, 11, 2, tzinfo=timezone.utc)
        try:
            with db.session_scope(engine) as session:
                registry.register_version(session, version_id="tiny-trained", location=str(tiny_model_dir),
                                          metrics={"cider": 0.52}, now=start)
                registry.register_version(
                    session, version_id="tiny-retrained", location=str(tiny_model_dir), parent_id="tiny-trained",
                    metrics={"base": {"cider": 0.55}, "feedback": {"cider": 1.31},
                             "gate": {"promote": True, "reason": "feedback CIDEr 0.90 -> 1.31", "max_base_drop": 0.03}},
                    now=start + timedelta(days=7))
        finally:
            engine.dispose()
        yield running


def registry_active(server) -> str | None:
    engine = db.create_engine_for(server.database_url)
    try:
        with db.session_scope(engine) as session:
            active = registry.get_active(session)
            return active.id if active else None
    finally:
        engine.dispose()


def test_operator_reviews_the_queue_and_promotes_and_rolls_back(browser, operator_server, request):
    context, page = open_page(browser, operator_server.url + "operator", viewport={"width": 1200, "height": 1000})
    try:
        page.fill("#admin-key", ADMIN_KEY)
        page.click("#key-button")
        page.wait_for_selector("#queue .card img[src^='blob:']")
        page.wait_for_function("() => [...document.querySelectorAll('#queue img')].every((i) => i.naturalWidth > 0)")
        cards = page.locator("#queue .card")
        assert cards.count() == 2
        first, second = cards.nth(0), cards.nth(1)
        first_id, second_id = (int(c.get_attribute("data-caption-id")) for c in (first, second))
        first.locator("button.confirm").click()
        first.locator(".card-status.ok").wait_for()
        second.locator("input").fill("a blue square on white")
        second.locator("button[type=submit]").click()
        second.locator(".card-status.ok").wait_for()
        _, confirmed = stored_caption(operator_server, first_id)
        _, corrected = stored_caption(operator_server, second_id)
        assert [(c.kind, c.user_id[:6]) for c in confirmed] == [("confirmation", "admin:")]
        assert [c.text for c in corrected] == ["a blue square on white"]

        # The versions: a point per gate metric on the plot, oldest left, and the gate's reason in the table.
        assert page.locator("#plot circle.point.base_cider").count() == 2
        assert page.locator("#plot circle.point.feedback_cider").count() == 1
        xs = page.eval_on_selector_all("#plot circle.base_cider", "(dots) => dots.map((d) => Number(d.getAttribute('cx')))")
        assert xs[0] < xs[1]
        assert "feedback CIDEr 0.90 -> 1.31" in page.text_content("#versions")
        page.on("dialog", lambda dialog: dialog.accept())
        page.click("button[aria-label='Promote tiny-trained']")
        page.wait_for_function("() => document.getElementById('active').textContent === 'tiny-trained'")
        page.click("button[aria-label='Promote tiny-retrained']")
        page.wait_for_function("() => document.getElementById('active').textContent === 'tiny-retrained'")
        assert registry_active(operator_server) == "tiny-retrained"
        page.click("#rollback-button")
        page.wait_for_function("() => document.getElementById('active').textContent === 'tiny-trained'")
        assert registry_active(operator_server) == "tiny-trained"
        assert "Rolled back" in page.text_content("#models-status")
        screenshot(page, request.node.name)
        # At a phone's width the cards stack and nothing sticks out sideways.
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, f"{request.node.name}-phone")
    finally:
        context.close()


def test_operator_keyboard_only(browser, operator_server, request):
    context, page = open_page(browser, operator_server.url + "operator")
    try:
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")  # past the link back to the page
        assert page.evaluate("document.activeElement.id") == "admin-key"
        page.keyboard.type(ADMIN_KEY)
        page.keyboard.press("Enter")
        page.wait_for_selector("#queue .card")
        tab_to(page, "#queue .card button.confirm")
        page.keyboard.press("Enter")
        page.locator("#queue .card .card-status.ok").first.wait_for()
        tab_to(page, "#queue .card input")
        page.keyboard.press("Control+A")
        page.keyboard.type("a red square")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#queue .card-status.ok').length >= 1")
        tab_to(page, "button.promote")
        page.on("dialog", lambda dialog: dialog.accept())
        promoted = page.evaluate("document.activeElement.getAttribute('aria-label')").removeprefix("Promote ")
        page.keyboard.press("Enter")
        page.wait_for_function("(id) => document.getElementById('active').textContent === id", arg=promoted)
        assert registry_active(operator_server) == promoted
        screenshot(page, request.node.name)
    finally:
        context.close()
