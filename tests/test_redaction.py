"""No form of a secret reaches an error message, a log line or the terminal, also when Informat
answers an error page that repeats the request (password raw, URL-encoded, XML-escaped)."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import pytest

from provisioner import log
from provisioner.errors import SourceError
from provisioner.passwords import PasswordConfig, generate
from provisioner.secret import Secret
from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.parser import without_request
from provisioner.sources.informat.reader import read_source
from tests.conftest import INSTELNRS, REFERENCE_DAY, informat_config

ROOT = Path(__file__).resolve().parent.parent

# A space (quote writes %20, quote_plus +), & and < (XML and HTML escape them), ! and / (quote
# leaves / alone unless told), é (two UTF-8 bytes when URL-encoded).
SECRET = "S3cret Inf0rmat!&<é/x"
# Every form of the secret holds these letters; none of them may be left anywhere.
CORE = "Inf0rmat"


def forms_of(secret: str) -> list[str]:
    lower_hex = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret))
    return [
        secret,
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        lower_hex,
        escape(secret),
        escape(secret, {'"': "&quot;"}),
        html.escape(secret),
        "".join(c if c.isalnum() else f"&#{ord(c)};" for c in secret),
        "".join(f"&#x{ord(c):x};" for c in secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        escape(quote_plus(secret)),
    ]


def assert_no_form(text: str) -> None:
    for form in forms_of(SECRET):
        assert form not in text, form
    assert CORE not in text


def test_every_form_of_a_registered_secret_is_redacted():
    Secret(SECRET, "test")
    for form in forms_of(SECRET):
        assert log.redact(f"before {form} after") == "before [secret] after", form
    # Mixed forms, character by character, as a page that escapes only some characters shows.
    mixed = "S3cret+Inf0rmat&#33;&amp;%3C%C3%a9/x"
    assert log.redact(mixed) == "[secret]"
    assert log.redact("an ordinary line about Inf0rmat") == "an ordinary line about Inf0rmat"


def test_with_the_passwords_of_a_first_night_registered_each_is_still_found():
    """Every initial password is a secret too: thousands at once must neither hide one another
    nor the configuration's secrets (how fast that stays: bench/bench_redaction.py)."""
    Secret(SECRET, "test")
    passwords = [generate(PasswordConfig()) for _ in range(2000)]
    for password in passwords:
        log.register_secret(password)
    some = passwords[::397]
    line = " | ".join([quote(p) if n % 2 else html.escape(p) for n, p in enumerate(some)])
    assert log.redact(line) == " | ".join(["[secret]"] * len(some))
    assert log.redact(f"x {quote_plus(SECRET)} {passwords[-1]}y") == "x [secret] [secret]y"


def test_echoed_request_parameters_are_left_out_of_error_texts():
    text = (
        "Invalid request /wsInformat.asmx/Lln?login=a%40b.be&paswoord=zz%21&instelnr=1 "
        "(form login=a%40b.be&amp;paswoord=zz%21) <paswoord>zz!</paswoord> "
        "&lt;paswoord&gt;zz!&lt;/paswoord&gt; paswoord=zz!"
    )
    cleaned = without_request(text)
    assert "zz" not in cleaned and "a%40b" not in cleaned
    assert cleaned.startswith("Invalid request /wsInformat.asmx/Lln?[request parameters left out]")


@pytest.mark.parametrize(
    ("fault", "transport", "expected"),
    [
        # The echo names the password, so it reads as a rejected login; either way it is shown.
        ("echo", "get", "HTTP 500: Informat rejected the login: Invalid request"),
        ("echo", "post", "HTTP 500: Informat rejected the login: Invalid request"),
        ("echo_fault", "soap", "Informat rejected the login: Invalid request"),
        ("echo_html", "get", "HTTP 500: Bad Request - Invalid request"),
        ("echo_200", "get", "the answer is not XML"),
    ],
)
def test_an_echoed_request_leaves_no_form_of_the_password_in_the_error(
    server, fault, transport, expected
):
    server.inject(fault, times=None)
    config = informat_config(server.url, password=Secret(SECRET, "test"), transport=transport)
    with pytest.raises(SourceError) as caught:
        read_source(config, [operation("Lln")], today=REFERENCE_DAY)
    message = str(caught.value)
    assert expected in message  # still useful: it says what Informat answered
    assert_no_form(message)
    # The server did receive the password, in the form the transport sends it.
    assert any(r.params.get("paswoord") == SECRET for r in server.requests)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_command_line_shows_no_form_of_the_password(server, tmp_path, log_format):
    server.inject("echo", times=None)
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        "source:\n  informat:\n"
        f"    url: {server.url}\n    login: webservices@school.be\n"
        f"    password: ${{TEST_PW}}\n    schooljaar: 2025-26\n    instelnrs: {INSTELNRS}\n"
        "    retries: 0\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            *(sys.executable, "-m", "provisioner", "--log-format", log_format, "-v", "fetch"),
            *("--config", str(config), "--dataset", "Lln"),
        ],
        capture_output=True,
        text=True,
        env={"TEST_PW": SECRET, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Invalid request" in result.stderr
    assert_no_form(result.stdout + result.stderr)
    if log_format == "json":
        lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        errors = [line for line in lines if line["level"] == "error"]
        assert errors and "Invalid request" in errors[0]["message"]


def test_json_log_fields_are_redacted_in_their_escaped_form():
    Secret(SECRET, "test")
    stream = io.StringIO()
    log.setup("json", verbose=True, stream=stream)
    try:
        log.event("calling Informat", url=f"https://x/Lln?paswoord={quote_plus(SECRET)}")
        log.event(f"echo {html.escape(SECRET)}", body={"paswoord": SECRET})
    finally:
        log.setup("text", verbose=False)
    assert_no_form(stream.getvalue())
    assert stream.getvalue().count("[secret]") == 3
