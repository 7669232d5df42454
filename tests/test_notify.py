"""Notifications: a night's message reaches a local webhook receiver (Teams, Slack, JSON), a local
SMTP server (STARTTLS and AUTH) and Graph's sendMail on the Graph server; no secret and no
national number in any of them; a delivery that fails is a returned problem, never an exception;
the heartbeat is pinged after a night that ran to the end only; expiry warnings."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from provisioner.config import Config, load_config
from provisioner.errors import ConfigError
from provisioner.log import register_secret
from provisioner.notify import (
    NightReport,
    NotifyConfig,
    SchoolNight,
    expiry_warnings,
    message,
    notify,
    ping_heartbeat,
)
from tests.fakes.graph_server import GraphServer
from tests.fakes.smtp_catcher import SmtpCatcher
from tests.fakes.tls import TestCA as CertificateAuthority
from tests.fakes.tls import make_test_ca
from tests.fakes.webhook_receiver import WebhookReceiver

TENANT = "school.onmicrosoft.com"
CLIENT = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
ENTRA_SECRET = "entra-app-secret-for-notify-tests"
SMTP_PASSWORD = "smtp-pass-Zq81!xy"
NATIONAL_NUMBER = "85.07.30-033.61"
LEAKED_SECRET = "leaky-secret-Kp20-abc"
APPROVE = (
    "provisioner apply --config /etc/provisioner/provisioner.yaml "
    '/var/lib/provisioner/runs/2026-12-01T023000Z/plan.json --approve "REASON"'
)
SOURCE = """\
source:
  informat:
    url: https://webservice.informatsoftware.be/wsInformat.asmx
    login: webservices@school.be
    password: ${TEST_INFORMAT_PASSWORD}
    schooljaar: auto
    instelnrs: ["030569", "030577"]
"""


def blocked_night(**changes: object) -> NightReport:
    """A blocked night of two schools, with a held person whose reason carries a national number
    and an error that carries a secret (neither may reach a message)."""
    night = NightReport(
        outcome="blocked",
        config="/etc/provisioner/provisioner.yaml",
        started=dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC),
        finished=dt.datetime(2026, 12, 1, 2, 34, tzinfo=dt.UTC),
        exit_code=2,
        target="ldaps://dc1.school.be DC=school,DC=be",
        schools=[
            SchoolNight("030569", "Sint-Jozefsinstituut", {"create": 3, "disable": 41}, held=1),
            SchoolNight("030577", "Basisschool De Linde", {"update": 2}),
        ],
        blocks=[
            "41 disables at Sint-Jozefsinstituut is more than policy.max_disable (20): a school "
            "that answers with too few pupils looks exactly like pupils who left"
        ],
        held=[
            {
                "kind": "student",
                "key": "12345",
                "school": "030569",
                "reason": f"rijksregisternummer {NATIONAL_NUMBER} is not a valid number",
                "dataset": "students",
                "field": "rijksregisternummer",
                "since": "2026-11-28",
                "nights": 4,
            }
        ],
        approve_command=APPROVE,
        run_folder="/var/lib/provisioner/runs/2026-12-01T023000Z",
        error=f"the DC said: bad password {LEAKED_SECRET}",
        warnings=[],
    )
    for name, value in changes.items():
        setattr(night, name, value)
    return night


def assert_clean(text: str) -> None:
    """No secret and no national number, in any spelling the payloads use."""
    for forbidden in (LEAKED_SECRET, NATIONAL_NUMBER, SMTP_PASSWORD, "85073003361"):
        assert forbidden not in text
    assert "[secret]" in text and "[national number]" in text


@pytest.fixture(autouse=True)
def secrets_registered():
    # What provisioner run does as it reads them: every secret revealed is registered.
    register_secret(LEAKED_SECRET)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CertificateAuthority:
    return make_test_ca(tmp_path_factory.mktemp("notify-ca"))


def load(tmp_path: Path, notify_section: str, extra: str = "") -> Config:
    path = tmp_path / "provisioner.yaml"
    path.write_text(SOURCE + extra + notify_section, encoding="utf-8")
    return load_config(path)


def notify_config(tmp_path: Path, notify_section: str, extra: str = "") -> NotifyConfig:
    config = load(tmp_path, notify_section, extra)
    assert config.notify is not None
    return config.notify


# -- webhook ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["teams", "slack", "json"])
def test_a_blocked_night_reaches_the_webhook_in_each_format(tmp_path, ca, form):
    with WebhookReceiver(tls=ca) as hook:
        config = notify_config(
            tmp_path,
            f"notify:\n  webhook:\n    url: {hook.url('/hook?sig=abc123')}\n"
            f"    format: {form}\n    ca_file: {ca.ca_file}\n",
        )
        start = time.perf_counter()
        assert notify(config, blocked_night()) == []
        assert time.perf_counter() - start < 5
        (request,) = hook.posts()
    assert request.path == "/hook?sig=abc123"
    assert request.headers["content-type"] == "application/json"
    raw = request.body.decode()
    assert_clean(raw)
    payload = request.json
    if form == "teams":
        assert payload["type"] == "message"
        (attachment,) = payload["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        blocks = card["body"]
        # Text from elsewhere is in TextRuns, which no renderer reads as Markdown.
        runs = [r for b in blocks if b["type"] == "RichTextBlock" for r in b["inlines"]]
        assert all(r["type"] == "TextRun" for r in runs)
        title = blocks[0]["inlines"][0]
        assert title["text"].startswith("Provisioner provisioner.yaml, night of 2026-12-01: BLOCK")
        assert title["color"] == "Warning" and title["size"] == "Large"
        assert [r["text"] for r in runs if r.get("fontType") == "Monospace"] == [APPROVE]
        lines = [r["text"] for r in runs]
        assert any("more than policy.max_disable (20)" in line for line in lines)
        assert "Sint-Jozefsinstituut: 3 create, 41 disable; 1 held" in lines
        assert "Basisschool De Linde: 2 update" in lines
        assert any(line.startswith("• student 12345 at Sint-Jozefsinstituut") for line in lines)
        facts = {
            b["inlines"][0]["text"]: b["inlines"][1]["text"]
            for b in blocks
            if b["type"] == "RichTextBlock" and len(b["inlines"]) == 2
        }
        assert facts["Run folder: "] == "/var/lib/provisioner/runs/2026-12-01T023000Z"
        assert facts["Outcome: "] == "blocked"
        headings = [b["text"] for b in blocks if b["type"] == "TextBlock"]
        assert "Why the plan was stopped" in headings and "Per school" in headings
    elif form == "slack":
        assert payload["text"].startswith("Provisioner provisioner.yaml")
        assert payload["blocks"][0]["type"] == "header"
        sections = "".join(b["text"]["text"] for b in payload["blocks"][1:])
        assert "Sint-Jozefsinstituut (030569): 3 create, 41 disable; 1 held" in sections
        assert APPROVE.replace('"', '"') in sections
        assert all(len(b["text"]["text"]) <= 3000 for b in payload["blocks"][1:])
    else:
        assert payload["outcome"] == "blocked"
        assert payload["exit_code"] == 2
        assert payload["approve_command"] == APPROVE
        assert payload["schools"][0]["name"] == "Sint-Jozefsinstituut"
        assert payload["held"][0]["key"] == "12345"
        assert payload["started"] == "2026-12-01T02:30:00+00:00"


def test_a_webhook_that_answers_500_or_hangs_or_is_not_there_is_a_problem_not_an_error(
    tmp_path, ca
):
    with WebhookReceiver(tls=ca) as hook:
        section = (
            f"notify:\n  timeout: 0.5\n  webhook:\n    url: {hook.url('/hook')}\n"
            f"    ca_file: {ca.ca_file}\n"
        )
        config = notify_config(tmp_path, section)
        hook.status, hook.answer = 500, f"internal error near {LEAKED_SECRET}"
        (problem,) = notify(config, blocked_night())
        assert problem.startswith("could not send the webhook: 127.0.0.1 answered HTTP 500")
        assert LEAKED_SECRET not in problem

        hook.status, hook.hang = 202, 10.0
        start = time.perf_counter()
        (problem,) = notify(config, blocked_night())
        assert "127.0.0.1 did not answer in time" in problem
        assert time.perf_counter() - start < 5

    # 127.0.0.9 port 9: nobody listens there.
    config = notify_config(tmp_path, "notify:\n  webhook: {url: 'http://127.0.0.9:9/hook'}\n")
    (problem,) = notify(config, blocked_night())
    assert problem.startswith("could not send the webhook: cannot reach 127.0.0.9")


def test_a_webhook_whose_certificate_is_not_trusted_says_what_to_do(tmp_path, ca):
    with WebhookReceiver(tls=ca) as hook:
        config = notify_config(tmp_path, f"notify:\n  webhook: {{url: '{hook.url('/x')}'}}\n")
        (problem,) = notify(config, blocked_night())
        assert hook.posts() == []
    assert "CERTIFICATE_VERIFY_FAILED" in problem and "ca_file" in problem


def test_a_webhook_url_from_the_environment_never_shows_in_a_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_NOTIFY_WEBHOOK", "http://127.0.0.9:9/hook/very-secret-key-123")
    config = notify_config(tmp_path, "notify:\n  webhook: {url: '${TEST_NOTIFY_WEBHOOK}'}\n")
    (problem,) = notify(config, blocked_night())
    assert "very-secret-key-123" not in problem and "127.0.0.9" in problem


# -- e-mail ----------------------------------------------------------------------------------------


def smtp_section(smtp: SmtpCatcher, ca: CertificateAuthority, **extra: str) -> str:
    lines = [
        "notify:",
        "  email:",
        f"    smtp: {smtp.address}",
        "    from: provisioner@school.example",
        "    to: [ict@school.example, directie@school.example]",
        "    username: provisioner@school.example",
        "    password: ${TEST_SMTP_PASSWORD}",
        f"    ca_file: {ca.ca_file}",
        *(f"    {k}: {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def test_a_blocked_night_reaches_the_mail_server_over_starttls_with_a_login(
    tmp_path, ca, monkeypatch
):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    users = {"provisioner@school.example": SMTP_PASSWORD}
    with SmtpCatcher(tls=ca, users=users) as smtp:
        config = notify_config(tmp_path, smtp_section(smtp, ca))
        night = blocked_night(error=f"the mail server password {SMTP_PASSWORD} leaked here")
        assert notify(config, night) == []
        (mail,) = smtp.messages
    assert mail.tls and mail.user == "provisioner@school.example"
    assert smtp.commands[:2] == ["EHLO", "STARTTLS"]
    assert "AUTH PLAIN" in smtp.commands or "AUTH LOGIN" in smtp.commands
    assert mail.sender == "provisioner@school.example"
    assert mail.recipients == ["ict@school.example", "directie@school.example"]
    message_ = mail.message
    assert message_["Subject"].startswith("Provisioner provisioner.yaml, night of 2026-12-01")
    assert "BLOCKED" in message_["Subject"] and "1 person held" in message_["Subject"]
    assert message_["Auto-Submitted"] == "auto-generated"
    body = mail.body
    assert "Sint-Jozefsinstituut (030569): 3 create, 41 disable; 1 held" in body
    assert "Basisschool De Linde (030577): 2 update" in body
    assert "more than policy.max_disable (20)" in body
    assert APPROVE in body
    assert "student 12345 at Sint-Jozefsinstituut, students.rijksregisternummer" in body
    assert "held since 2026-11-28, 4 nights" in body
    assert "Run folder: /var/lib/provisioner/runs/2026-12-01T023000Z" in body
    assert_clean(mail.data.decode())


def test_a_mail_server_that_refuses_the_login_or_is_not_there_is_a_problem(
    tmp_path, ca, monkeypatch
):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "not-the-right-one")
    with SmtpCatcher(tls=ca, users={"provisioner@school.example": SMTP_PASSWORD}) as smtp:
        config = notify_config(tmp_path, smtp_section(smtp, ca))
        (problem,) = notify(config, blocked_night())
        assert smtp.messages == []
    assert "refused the login of provisioner@school.example: 535" in problem
    assert "not-the-right-one" not in problem

    section = smtp_section(SmtpCatcher(port=9), ca).replace("127.0.0.1:9", "127.0.0.9:9")
    config = notify_config(tmp_path, section + "  timeout: 2\n")
    (problem,) = notify(config, blocked_night())
    assert problem.startswith("could not send the e-mail (SMTP): cannot reach the mail server")
    assert "127.0.0.9:9" in problem


def test_a_mail_server_whose_certificate_is_not_trusted_gets_no_password(
    tmp_path, ca, monkeypatch, tmp_path_factory
):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    other = make_test_ca(tmp_path_factory.mktemp("other-ca"))
    with SmtpCatcher(tls=other, users={"provisioner@school.example": SMTP_PASSWORD}) as smtp:
        config = notify_config(tmp_path, smtp_section(smtp, ca))
        (problem,) = notify(config, blocked_night())
        assert smtp.logins == [] and smtp.messages == []
    assert "CERTIFICATE_VERIFY_FAILED" in problem


def test_graph_sendmail_sends_with_the_entra_app(tmp_path, ca, monkeypatch):
    monkeypatch.setenv("TEST_ENTRA_SECRET", ENTRA_SECRET)
    with GraphServer(tls=ca) as graph:
        graph.register_app(TENANT, CLIENT, secret=ENTRA_SECRET)
        graph.add_user(**mailbox("provisioner@school.example"))
        config = load(
            tmp_path,
            "notify:\n  email: {graph: true, from: provisioner@school.example,"
            " to: [ict@school.example]}\n",
            extra=entra_target(graph) + "state: state.db\n",
        )
        assert config.notify is not None and config.target is not None
        entra = config.target.entra
        night = blocked_night(error=f"Graph said {ENTRA_SECRET} and {LEAKED_SECRET}")
        assert notify(config.notify, night, entra=entra) == []
        (sent,) = graph.sent_mail
        request = next(r for r in graph.requests if r.path.endswith("/sendMail"))
        assert request.headers["authorization"] == f"Bearer {graph.token}"

        graph.mail_send_allowed = False
        (problem,) = notify(config.notify, night, entra=entra)
        assert "Graph answered HTTP 403 ErrorAccessDenied: Access is denied." in problem
        assert "Mail.Send" in problem and "innerError" not in problem
    assert sent["from"] == "provisioner@school.example"
    assert sent["saveToSentItems"] is False
    mail = sent["message"]
    assert mail["toRecipients"] == [{"emailAddress": {"address": "ict@school.example"}}]
    assert mail["body"]["contentType"] == "Text"
    assert "BLOCKED" in mail["subject"]
    assert "Sint-Jozefsinstituut" in mail["body"]["content"] and APPROVE in mail["body"]["content"]
    assert ENTRA_SECRET not in json.dumps(sent)
    assert_clean(json.dumps(sent))


def test_graph_sendmail_refuses_a_malformed_body_and_an_unknown_sender(ca):
    import httpx

    with GraphServer(tls=ca) as graph:
        graph.add_user(**mailbox("robot@school.example"))
        post = lambda who, body: httpx.post(  # noqa: E731
            f"{graph.url}/users/{who}/sendMail",
            json=body,
            headers=graph.auth_headers,
            verify=graph.client_ssl_context(),
        )
        good = {"message": {"toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}}
        assert post("robot@school.example", good).status_code == 202
        assert post("robot@school.example", {"message": {}}).status_code == 400
        assert post("robot@school.example", {}).status_code == 400
        unknown = post("nobody@school.example", good)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "ErrorInvalidUser"
        assert len(graph.sent_mail) == 1


def mailbox(upn: str) -> dict[str, object]:
    """A user of the Graph server to send as (sendMail needs a mailbox of the tenant)."""
    return {
        "userPrincipalName": upn,
        "displayName": "Provisioner",
        "mailNickname": upn.partition("@")[0],
        "accountEnabled": True,
        "passwordProfile": {"password": "Unused-Pa55word!"},
    }


def entra_target(graph: GraphServer) -> str:
    return (
        "target:\n  entra:\n"
        f"    tenant_id: {TENANT}\n"
        f"    client_id: {CLIENT}\n"
        "    client_secret: ${TEST_ENTRA_SECRET}\n"
        "    domains: [school.example]\n"
        f"    graph_url: {graph.url}\n"
        f"    authority: {graph.authority}\n"
        f"    ca_file: {graph.ca_file}\n"
    )


# -- when to tell ---------------------------------------------------------------------------------


QUIET = {"outcome": "nothing", "exit_code": 0, "blocks": [], "held": [], "approve_command": None}


@pytest.mark.parametrize(
    ("on", "night", "told"),
    [
        ("", QUIET, False),  # the default, blocked/failed/held: a quiet night says nothing
        ("", {}, True),
        ("[failed]", {}, False),  # blocked, but only failures asked for
        ("[failed]", {"outcome": "failed", "exit_code": 1}, True),
        ("[failed]", {**QUIET, "outcome": "applied", "results": {"applied": 3, "failed": 1}}, True),
        ("[held]", {"outcome": "applied", "blocks": []}, True),
        ("[changes]", {**QUIET, "outcome": "applied", "results": {"applied": 3}}, True),
        ("[changes]", QUIET | {"schools": []}, False),
        ("[changes]", {}, False),  # blocked: its schools' changes were planned, not made
        ("[always]", QUIET | {"schools": []}, True),
        ("[blocked]", {**QUIET, "outcome": "waiting", "blocks": ["leavers wait"]}, True),
        ("[blocked]", QUIET | {"warnings": ["the certificate runs out"]}, True),
    ],
)
def test_on_decides_which_nights_are_told(tmp_path, on, night, told):
    with WebhookReceiver() as hook:
        section = f"notify:\n  webhook: {{url: '{hook.url('/')}', format: json}}\n"
        if on:
            section += f"  on: {on}\n"
        config = notify_config(tmp_path, section)
        assert notify(config, blocked_night(**night)) == []
        assert len(hook.posts()) == (1 if told else 0)


# -- heartbeat -------------------------------------------------------------------------------------


def test_the_heartbeat_is_pinged_after_a_night_that_ran_to_the_end_only(tmp_path):
    with WebhookReceiver() as monitor:
        config = notify_config(tmp_path, f"notify:\n  heartbeat: {monitor.url('/ping/abc')}\n")
        for outcome in ("applied", "nothing", "waiting"):
            assert ping_heartbeat(config, blocked_night(outcome=outcome)) == []
        for outcome in ("blocked", "failed"):
            assert ping_heartbeat(config, blocked_night(outcome=outcome)) == []
        assert [(r.method, r.path) for r in monitor.requests] == [("GET", "/ping/abc")] * 3
        monitor.status = 500
        (problem,) = ping_heartbeat(config, blocked_night(outcome="applied"))
        assert problem.startswith("could not send the heartbeat: 127.0.0.1 answered HTTP 500")
    config = notify_config(tmp_path, "notify:\n  heartbeat: http://127.0.0.9:9/ping\n")
    (problem,) = ping_heartbeat(config, blocked_night(outcome="nothing"))
    assert "cannot reach 127.0.0.9" in problem


# -- expiry ----------------------------------------------------------------------------------------


def test_expiry_warnings_for_the_app_certificate_and_the_client_secret(tmp_path, monkeypatch):
    certificate = make_test_ca(tmp_path, days=10).cert_file
    today = dt.datetime.now(dt.UTC).date()
    graph_like = (
        "target:\n  entra:\n"
        f"    tenant_id: {TENANT}\n"
        f"    client_id: {CLIENT}\n"
        "    domains: [school.example]\n"
    )
    with_certificate = load(
        tmp_path,
        "notify:\n  expiry_warning_days: 30\n",
        extra=graph_like + f"    certificate: {certificate}\nstate: state.db\n",
    )
    (warning,) = expiry_warnings(with_certificate, today)
    ends = today + dt.timedelta(days=10)
    assert warning.startswith(f"the certificate of the Entra app ({certificate}) runs out on")
    assert f"runs out on {ends} (in 10 days)" in warning
    assert "upload a new certificate" in warning
    assert expiry_warnings(with_certificate, today - dt.timedelta(days=30)) == []
    (late,) = expiry_warnings(with_certificate, ends + dt.timedelta(days=1))
    assert f"ran out on {ends}" in late

    with_secret = load(
        tmp_path,
        "notify:\n  expiry_warning_days: 14\n",
        extra=graph_like
        + "    client_secret: ${TEST_ENTRA_SECRET}\n    client_secret_expires: 2027-03-31\n"
        + "state: state.db\n",
    )
    assert expiry_warnings(with_secret, dt.date(2027, 3, 16)) == []
    (warning,) = expiry_warnings(with_secret, dt.date(2027, 3, 17))
    assert warning.startswith(
        f"the client secret of the Entra app {CLIENT} runs out on 2027-03-31 (in 14 days)"
    )
    assert "$" + "{TEST_ENTRA_SECRET}" in warning  # where to put the new one; never its value
    # Without a notify section the default is 30 days.
    no_notify = load(
        tmp_path,
        "",
        extra=graph_like + "    client_secret: ${X}\n"
        "    client_secret_expires: 2027-03-31\nstate: state.db\n",
    )
    assert len(expiry_warnings(no_notify, dt.date(2027, 3, 1))) == 1
    assert expiry_warnings(no_notify, dt.date(2027, 2, 28)) == []


def test_an_expiry_warning_is_in_the_message(tmp_path):
    night = blocked_night(warnings=["the client secret of the Entra app runs out on 2027-03-31"])
    text = message.text(night)
    assert "Warnings (act before they stop a night):" in text
    assert "  - the client secret of the Entra app runs out on 2027-03-31" in text
    assert "1 warning" in message.subject(night)


# -- configuration ---------------------------------------------------------------------------------


def test_the_notify_section_loads_with_its_defaults(tmp_path):
    config = notify_config(
        tmp_path,
        "notify:\n  email:\n    smtp: mail.school.example\n    from: robot@school.example\n"
        "    to: ict@school.example\n",
    )
    assert config.on == ["blocked", "failed", "held"]
    assert config.expiry_warning_days == 30 and config.webhook is None
    assert config.email is not None
    assert config.email.from_ == "robot@school.example"
    assert config.email.to == ["ict@school.example"]
    assert config.email.starttls is True and config.email.smtp == "mail.school.example"
    assert load(tmp_path, "").notify is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "notify:\n  webhook:\n    url: https://x.example/hook\n    format: discord\n",
            r"provisioner\.yaml:11: notify\.webhook\.format: 'discord' is not one of teams, "
            r"slack, json",
        ),
        (
            "notify:\n  on: [blocked, sometimes]\n",
            r"provisioner\.yaml:9: notify\.on\[1\]: 'sometimes' is not one of blocked, failed, "
            r"held, changes, always",
        ),
        (
            "notify:\n  email:\n    smtp: mail.school.example:587\n    graph: true\n"
            "    from: a@school.example\n    to: [b@school.example]\n",
            r"provisioner\.yaml:10: notify\.email: give either smtp: host:port .* or graph: true",
        ),
        (
            "notify:\n  email: {graph: true, from: a@school.example, to: [b@school.example]}\n",
            r"provisioner\.yaml:9: notify\.email: graph: true sends with the app of the Entra "
            r"target, and this configuration has none",
        ),
        (
            "notify:\n  email: {smtp: mail.school.example, from: nobody, to: [b@school.example]}\n",
            r"provisioner\.yaml:9: notify\.email\.from: not an e-mail address: nobody",
        ),
        (
            "notify:\n  email: {smtp: mail.school.example, sender: a@school.example, to: [b@s.be]}\n",
            r"provisioner\.yaml:9: notify\.email\.sender: unknown key \(known here: .*from,",
        ),
        (
            "notify:\n  webhook: {url: 'http://teams.example/hook'}\n",
            r"provisioner\.yaml:9: notify\.webhook\.url: use https://",
        ),
        (
            "notify:\n  email: {smtp: mail.school.example:25, starttls: false, from: a@s.be,\n"
            "          to: [b@s.be], username: a, password: '${P}'}\n",
            r"provisioner\.yaml:9: notify\.email: starttls: false would send the password in clear",
        ),
        (
            "notify:\n  email: {smtp: mail.school.example:smtp, from: a@s.be, to: [b@s.be]}\n",
            r"provisioner\.yaml:9: notify\.email\.smtp: expected host or host:port",
        ),
    ],
)
def test_configuration_mistakes_name_the_file_and_line(tmp_path, section, expected):
    with pytest.raises(ConfigError, match=expected):
        load(tmp_path, section)


def test_client_secret_expires_is_a_date(tmp_path):
    target = (
        "target:\n  entra:\n"
        f"    tenant_id: {TENANT}\n    client_id: {CLIENT}\n    domains: [school.example]\n"
        "    client_secret: ${X}\n    client_secret_expires: next year\nstate: state.db\n"
    )
    with pytest.raises(
        ConfigError, match=r":14: target\.entra\.client_secret_expires: expected a date"
    ):
        load(tmp_path, "", extra=target)


def test_a_mail_server_without_starttls_gets_no_login_and_no_message(tmp_path, ca, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    with SmtpCatcher(users={"provisioner@school.example": SMTP_PASSWORD}) as smtp:
        config = notify_config(tmp_path, smtp_section(smtp, ca))
        (problem,) = notify(config, blocked_night())
        assert smtp.commands == ["EHLO", "QUIT"]
        assert smtp.messages == []
    assert f"the mail server {smtp.address} does not offer STARTTLS" in problem


def test_a_relay_on_this_machine_without_tls_or_login(tmp_path, ca):
    with SmtpCatcher() as smtp:
        section = (
            f"notify:\n  email: {{smtp: '{smtp.address}', starttls: false,"
            " from: robot@school.example, to: ict@school.example}\n"
        )
        assert notify(notify_config(tmp_path, section), blocked_night()) == []
        (mail,) = smtp.messages
    assert not mail.tls and mail.user is None
    assert "STARTTLS" not in smtp.commands


def test_the_smtp_catcher_speaks_auth_login_and_wants_starttls_first(ca):
    import smtplib

    with SmtpCatcher(tls=ca, users={"u@school.example": "pw-1234"}) as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=5) as client:
            client.ehlo()
            assert client.has_extn("starttls") and not client.has_extn("auth")
            assert client.mail("a@school.example")[0] == 530
            client.starttls(context=ssl_context(ca))
            client.ehlo()
            assert client.has_extn("auth") and not client.has_extn("starttls")
            assert client.mail("a@school.example")[0] == 530  # a login first
            client.user, client.password = "u@school.example", "pw-1234"
            assert client.auth("LOGIN", client.auth_login, initial_response_ok=False)[0] == 235
            client.sendmail("a@school.example", ["b@school.example"], b"Subject: x\r\n\r\n.dot\r\n")
        (mail,) = smtp.messages
    assert smtp.logins == [("LOGIN", "u@school.example")]
    assert mail.data == b"Subject: x\r\n\r\n.dot\r\n"  # the dot-stuffing undone


def ssl_context(ca: CertificateAuthority):
    import ssl

    return ssl.create_default_context(cafile=str(ca.ca_file))


def test_graph_sendmail_that_cannot_sign_in_is_a_problem(tmp_path, ca, monkeypatch):
    monkeypatch.setenv("TEST_ENTRA_SECRET", "not-the-app-secret")
    with GraphServer(tls=ca) as graph:
        graph.register_app(TENANT, CLIENT, secret=ENTRA_SECRET)
        graph.add_user(**mailbox("provisioner@school.example"))
        config = load(
            tmp_path,
            "notify:\n  email: {graph: true, from: provisioner@school.example,"
            " to: [ict@school.example]}\n",
            extra=entra_target(graph) + "state: state.db\n",
        )
        assert config.notify is not None and config.target is not None
        (problem,) = notify(config.notify, blocked_night(), entra=config.target.entra)
        assert f"Entra ID refused the sign-in of app {CLIENT}" in problem
        assert "not-the-app-secret" not in problem
        (no_target,) = notify(config.notify, blocked_night(), entra=None)
        assert "needs the Entra target's settings" in no_target
        assert graph.sent_mail == []


def test_notify_works_from_inside_an_event_loop(tmp_path, ca, monkeypatch):
    """provisioner run may call it from async code: sendMail then runs on a loop of its own."""
    import asyncio

    monkeypatch.setenv("TEST_ENTRA_SECRET", ENTRA_SECRET)
    with GraphServer(tls=ca) as graph:
        graph.register_app(TENANT, CLIENT, secret=ENTRA_SECRET)
        graph.add_user(**mailbox("provisioner@school.example"))
        config = load(
            tmp_path,
            "notify:\n  email: {graph: true, from: provisioner@school.example,"
            " to: [ict@school.example]}\n",
            extra=entra_target(graph) + "state: state.db\n",
        )
        assert config.notify is not None and config.target is not None
        notify_config_, entra = config.notify, config.target.entra

        async def from_async_code() -> list[str]:
            return notify(notify_config_, blocked_night(), entra=entra)

        assert asyncio.run(from_async_code()) == []
        assert len(graph.sent_mail) == 1


def test_a_waiting_night_says_what_waits_and_how_to_approve_it():
    night = blocked_night(
        outcome="waiting",
        exit_code=2,
        blocks=["12 deletes wait for an approval (policy.approve: [delete])"],
        results={"applied": 30, "skipped": 12, "failed": 0},
        held=[],
    )
    text = message.text(night)
    assert message.subject(night).endswith("Applied, but some changes wait for your approval")
    assert "Waiting for an approval:\n  - 12 deletes wait for an approval" in text
    assert APPROVE in text
    assert "Counts: 30 applied, 12 skipped, 0 failed" in text


def test_the_example_in_the_guide_loads(tmp_path):
    guide = (Path(__file__).parent.parent / "docs" / "notifications.md").read_text()
    example = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = notify_config(tmp_path, example)
    assert config.webhook is not None and config.webhook.format == "teams"
    assert config.email is not None and config.email.smtp == "mail.school.be:587"
    assert config.heartbeat is not None and config.expiry_warning_days == 30


def test_a_test_message_goes_out_whatever_on_says_and_pings_no_heartbeat(tmp_path, ca):
    from provisioner.notify import send_test

    with WebhookReceiver(tls=ca) as hook, SmtpCatcher() as smtp:
        section = (
            "notify:\n  on: [failed]\n"
            f"  webhook: {{url: '{hook.url('/t')}', ca_file: '{ca.ca_file}'}}\n"
            f"  email: {{smtp: '{smtp.address}', starttls: false, from: robot@school.example,"
            " to: ict@school.example}\n"
            f"  heartbeat: {hook.url('/ping')}\n"
        )
        config = notify_config(tmp_path, section)
        assert send_test(config, "/etc/provisioner/provisioner.yaml") == []
        (request,) = hook.requests
        (mail,) = smtp.messages
    assert request.path == "/t"
    card = request.json["attachments"][0]["content"]
    assert card["body"][0]["inlines"][0]["text"] == "Provisioner provisioner.yaml: a test message"
    assert mail.message["Subject"] == "Provisioner provisioner.yaml: a test message"
    assert "This is a test of the notifications" in mail.body
    assert "Outcome" not in mail.body and "Nothing was read or changed." in mail.body


def test_reading_a_configuration_needs_no_package_of_the_entra_extra():
    """An AD-only install has no cryptography or Graph SDK: notify must not import them early."""
    import subprocess
    import sys

    code = (
        "import sys, provisioner.config, provisioner.notify; "
        "print(sorted(m for m in ('cryptography', 'azure', 'msgraph') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parent.parent  # this checkout's package, not an installed one
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"
