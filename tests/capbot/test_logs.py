import io
import json
import logging
import sys

from capbot.logs import configure_logging, scrub


def test_tokens_are_scrubbed():
    line = scrub("posting with xoxb-1234-5678-abcdefgh and Bearer abcdefghijklmnopqrstuvwxyz123")
    assert "xoxb-1234" not in line and "abcdefghijklmnop" not in line
    assert line.count("[redacted]") == 2


def test_json_lines_carry_fields_and_follow_stderr(monkeypatch):
    configure_logging("INFO", as_json=True)
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("capbot.test").info("caption stored", extra={"caption_id": 7, "token": "xapp-1-A-secret"})
    monkeypatch.setattr(sys, "stderr", second)  # e.g. a test runner swapping streams: no write to a closed one
    logging.getLogger("capbot.test").warning("second")
    record = json.loads(first.getvalue())
    assert record["event"] == "caption stored" and record["caption_id"] == 7
    assert "secret" not in first.getvalue()
    assert json.loads(second.getvalue())["level"] == "warning"
