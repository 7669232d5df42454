"""Log lines: text or JSON lines, and never a secret or a national number."""

from __future__ import annotations

import io
import json
import logging

from provisioner import log
from provisioner.secret import Secret


def test_secrets_and_national_numbers_are_redacted_in_both_forms():
    Secret("Sup3r-geheim!", "test")  # a secret read from configuration registers itself
    for form in ("text", "json"):
        stream = io.StringIO()
        log.setup(form, verbose=True, stream=stream)
        log.event("bind with Sup3r-geheim! for 99.01.01-123.45 and 99010112345", rrn="99010112345")
        log.event("p_persoon 1234567, stamnr 202400117, at 20261128-215847")  # left alone
        text = stream.getvalue()
        assert "Sup3r-geheim!" not in text and "99010112345" not in text and "123.45" not in text
        assert text.count("[national number]") >= 2 and "[secret]" in text
        assert "1234567" in text and "202400117" in text and "20261128-215847" in text
        if form == "json":
            lines = [json.loads(line) for line in text.splitlines()]
            assert lines[0]["level"] == "info" and lines[0]["rrn"] == "[national number]"
    log.setup("text", verbose=False)


def test_text_logs_show_warnings_only_unless_verbose():
    stream = io.StringIO()
    log.setup("text", verbose=False, stream=stream)
    log.event("progress")
    log.event("something was skipped", logging.WARNING)
    assert stream.getvalue() == "WARNING: something was skipped\n"


def test_a_secret_with_quotes_and_backslashes_leaves_json_lines_valid():
    secret = 'Qu0te"and\\back'
    Secret(secret, "test")
    stream = io.StringIO()
    log.setup("json", verbose=True, stream=stream)
    try:
        log.event(f"raw {secret} and {json.dumps(secret)}", field=secret, nested={"k": [secret]})
    finally:
        log.setup("text", verbose=False)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["message"] == 'raw [secret] and "[secret]"'
    assert line["field"] == "[secret]" and line["nested"] == {"k": ["[secret]"]}
    assert "Qu0te" not in stream.getvalue()
