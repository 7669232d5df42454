"""Sending a night's message (webhook, e-mail by SMTP or Graph sendMail) and pinging the heartbeat.

A delivery that fails is a problem returned and logged, never raised: a night that went well stays
a night that went well when the mail server is down, and the exit code stays the night's own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import email.utils
import logging
import smtplib
import ssl
from collections.abc import Callable, Coroutine
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx

from provisioner.errors import ProvisionerError
from provisioner.log import event, redact
from provisioner.notify import message
from provisioner.notify.night import NightReport
from provisioner.notify.settings import SMTPS_PORT, EmailConfig, NotifyConfig, split_host_port
from provisioner.targets.base import tls_hint

if TYPE_CHECKING:
    from provisioner.targets.entra_settings import EntraConfig

T = TypeVar("T")

HEARTBEAT_OUTCOMES = frozenset({"applied", "nothing", "waiting"})
"""Nights the heartbeat is pinged after: the night ran to the end and brought the directory as
far as it may go without a person. Not after a failed night, and not after a blocked one (nothing
was applied: the message says so, and a monitor that keeps missing pings says it again when
nobody approves for days)."""


def reasons_to_notify(config: NotifyConfig, night: NightReport) -> list[str]:
    """Which of ``on`` this night meets (empty: no message). A warning (a certificate or secret
    that runs out) is always told: it stops every night once it is too late."""
    failed = night.outcome == "failed" or bool(night.results.get("failed"))
    # Changes made, not planned: a blocked night's schools list what would have been done.
    changed = night.outcome in ("applied", "waiting", "failed") and (
        bool(night.results.get("applied"))
        or any(any(school.changes.values()) for school in night.schools)
    )
    meets = {
        "always": True,
        "blocked": night.outcome in ("blocked", "waiting"),
        "failed": failed,
        "held": bool(night.held),
        "changes": changed,
    }
    met = [trigger for trigger in config.on if meets[trigger]]
    if night.warnings:
        met.append("warnings")
    return met


def notify(
    config: NotifyConfig, night: NightReport, *, entra: EntraConfig | None = None
) -> list[str]:
    """Send the night's message by webhook and e-mail when ``on`` says so; *entra* is the Entra
    target's settings, needed for ``email: {graph: true}``. Returns what could not be delivered
    (each also logged as a warning); never raises."""
    if not reasons_to_notify(config, night):
        return []
    return _deliver(config, night, entra, test=False)


def send_test(
    config: NotifyConfig, config_file: str, *, entra: EntraConfig | None = None
) -> list[str]:
    """A test message by webhook and e-mail, whatever ``on`` says (the heartbeat is not pinged:
    that would tell the monitor a night went well). Returns what could not be delivered."""
    now = dt.datetime.now(dt.UTC)
    night = NightReport(
        outcome="nothing", config=config_file, started=now, finished=now, exit_code=0
    )
    return _deliver(config, night, entra, test=True)


def _deliver(
    config: NotifyConfig, night: NightReport, entra: EntraConfig | None, *, test: bool
) -> list[str]:
    problems: list[str] = []
    if config.webhook is not None:
        problems += _guarded("the webhook", lambda: _post_webhook(config, night, test))
    if config.email is not None:
        email_config = config.email
        if email_config.graph:
            problems += _guarded(
                "the e-mail (Graph sendMail)",
                lambda: _run(_graph_send(config, email_config, night, entra, test)),
            )
        else:
            problems += _guarded(
                "the e-mail (SMTP)", lambda: _smtp_send(config, email_config, night, test)
            )
    for problem in problems:
        event(problem, logging.WARNING, notification="not delivered")
    return problems


def ping_heartbeat(config: NotifyConfig, night: NightReport) -> list[str]:
    """Ping ``heartbeat`` (GET) after a night that ran to the end (:data:`HEARTBEAT_OUTCOMES`).
    Returns what went wrong (also logged); never raises."""
    if config.heartbeat is None or night.outcome not in HEARTBEAT_OUTCOMES:
        return []
    heartbeat = config.heartbeat

    def ping() -> None:
        url = heartbeat.reveal()
        with httpx.Client(timeout=config.timeout, follow_redirects=True) as client:
            try:
                answer = client.get(url)
            except httpx.HTTPError as exc:
                raise _Undelivered(_unreachable(heartbeat.host, exc)) from None
        if not answer.is_success:
            raise _Undelivered(f"{heartbeat.host} answered {_status(answer)}")

    problems = _guarded("the heartbeat", ping)
    for problem in problems:
        event(problem, logging.WARNING, notification="heartbeat not pinged")
    return problems


class _Undelivered(Exception):
    """Why one delivery failed, in words for the coordinator."""


def _guarded(what: str, deliver: Callable[[], object]) -> list[str]:
    """*deliver*'s failure as one redacted line; nothing escapes (not even a bug: a notification
    never decides how a night ends)."""
    try:
        deliver()
    except (_Undelivered, ProvisionerError) as exc:  # already in words for the coordinator
        return [redact(f"could not send {what}: {exc}")]
    except Exception as exc:  # see above: logged and returned, never raised
        return [redact(f"could not send {what}: {type(exc).__name__}: {exc}")]
    return []


def _verify(ca_file: Path | None) -> ssl.SSLContext:
    """Certificates are always checked: against *ca_file* when one is given, else the system's."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return ssl.create_default_context()


def _unreachable(host: str, exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"{host} did not answer in time"
    return f"cannot reach {host}: {tls_hint(str(exc) or type(exc).__name__)}"


def _status(answer: httpx.Response) -> str:
    said = " ".join(answer.text.split())[:200]
    return f"HTTP {answer.status_code}" + (f": {said}" if said else "")


# -- webhook ---------------------------------------------------------------------------------------


def _post_webhook(config: NotifyConfig, night: NightReport, test: bool) -> None:
    webhook = config.webhook
    assert webhook is not None
    url = webhook.url.reveal()
    body = message.payload(night, webhook.format, test=test)
    # No redirects: a webhook URL that answers with one is not what was configured.
    with httpx.Client(timeout=config.timeout, verify=_verify(webhook.ca_file)) as client:
        try:
            answer = client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise _Undelivered(_unreachable(webhook.url.host, exc)) from None
    if not answer.is_success:
        hint = ""
        if webhook.format == "teams" and answer.status_code in (400, 401, 403, 404):
            hint = "; check that the Teams workflow is still on and its URL complete"
        raise _Undelivered(f"{webhook.url.host} answered {_status(answer)}{hint}")


# -- e-mail ----------------------------------------------------------------------------------------


def _mail(email_config: EmailConfig, night: NightReport, test: bool) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject(night, test=test)
    mail["From"] = email_config.from_
    mail["To"] = ", ".join(email_config.to)
    mail["Date"] = email.utils.formatdate(localtime=False)
    mail["Message-ID"] = email.utils.make_msgid(domain=email_config.from_.rpartition("@")[2])
    mail["Auto-Submitted"] = "auto-generated"  # no out-of-office replies to a robot
    mail.set_content(message.text(night, test=test))
    return mail


def _smtp_send(
    config: NotifyConfig, email_config: EmailConfig, night: NightReport, test: bool
) -> None:
    assert email_config.smtp is not None
    host, port = split_host_port(email_config.smtp)
    context = _verify(email_config.ca_file)
    try:
        server: smtplib.SMTP
        if port == SMTPS_PORT:
            server = smtplib.SMTP_SSL(host, port, timeout=config.timeout, context=context)
        else:
            server = smtplib.SMTP(host, port, timeout=config.timeout)
        with server:
            server.ehlo()
            if port != SMTPS_PORT and email_config.starttls:
                if not server.has_extn("starttls"):
                    raise _Undelivered(
                        f"the mail server {host}:{port} does not offer STARTTLS; use port "
                        f"{SMTPS_PORT}, or a server that does"
                    )
                server.starttls(context=context)
                server.ehlo()
            if email_config.username is not None and email_config.password is not None:
                server.login(email_config.username, email_config.password.reveal())
            # Made after the login: the password, now read, is one of the secrets it redacts.
            refused = server.send_message(_mail(email_config, night, test))
    except smtplib.SMTPAuthenticationError as exc:
        raise _Undelivered(
            f"the mail server {host}:{port} refused the login of {email_config.username}: "
            f"{_smtp_said(exc)}; check username and password (Microsoft 365 switches SMTP "
            "authentication off: use graph: true there)"
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise _Undelivered(
            f"the mail server {host}:{port} refused every recipient: "
            + ", ".join(f"{who} ({_smtp_said(why)})" for who, why in exc.recipients.items())
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise _Undelivered(f"the mail server {host}:{port} answered {_smtp_said(exc)}") from None
    except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
        problem = tls_hint(str(exc) or type(exc).__name__)
        if isinstance(exc, TimeoutError):
            problem = "no answer in time"
        raise _Undelivered(f"cannot reach the mail server {host}:{port}: {problem}") from None
    if refused:
        raise _Undelivered(
            "the mail server refused some recipients: "
            + ", ".join(f"{who} ({_smtp_said(why)})" for who, why in refused.items())
        )


def _smtp_said(answer: Any) -> str:
    if isinstance(answer, smtplib.SMTPResponseException):
        code, said = answer.smtp_code, answer.smtp_error
    else:
        code, said = answer
    text = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    return f"{code} {' '.join(text.split())}"


async def _graph_send(
    config: NotifyConfig,
    email_config: EmailConfig,
    night: NightReport,
    entra: EntraConfig | None,
    test: bool,
) -> None:
    """``POST {graph_url}/users/{from}/sendMail`` with an app token of the Entra target's app,
    got the way the target gets its own."""
    if entra is None:
        raise _Undelivered("graph: true needs the Entra target's settings, and none were given")
    # Imported here: the Graph SDK is the [entra] extra, and only this path needs it.
    from azure.core.exceptions import AzureError

    from provisioner.targets.entra.transport import app_credential

    credential = app_credential(entra)
    try:
        token = await credential.get_token(entra.scope)
    except AzureError as exc:
        first = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
        raise _Undelivered(
            f"Entra ID refused the sign-in of app {entra.client_id}: {first}"
        ) from None
    finally:
        await credential.close()
    # Made after the sign-in: the client secret, now read, is one of the secrets it redacts.
    body = {
        "message": {
            "subject": message.subject(night, test=test),
            "body": {"contentType": "Text", "content": message.text(night, test=test)},
            "toRecipients": [{"emailAddress": {"address": a}} for a in email_config.to],
        },
        "saveToSentItems": False,
    }
    url = f"{entra.graph_url}/users/{quote(email_config.from_, safe='@')}/sendMail"
    host = httpx.URL(entra.graph_url).host
    async with httpx.AsyncClient(timeout=config.timeout, verify=_verify(entra.ca_file)) as client:
        try:
            answer = await client.post(
                url, json=body, headers={"Authorization": f"Bearer {token.token}"}
            )
        except httpx.HTTPError as exc:
            raise _Undelivered(_unreachable(host, exc)) from None
    if answer.is_success:
        return
    hint = ""
    if answer.status_code == 403:
        hint = (
            f"; the app {entra.client_id} needs the application permission Mail.Send (with admin "
            f"consent), and an application access policy must let it send as {email_config.from_}"
        )
    elif answer.status_code == 404:
        hint = f"; {email_config.from_} must be a mailbox of the tenant"
    raise _Undelivered(f"Graph answered {_graph_said(answer)}{hint}")


def _graph_said(answer: httpx.Response) -> str:
    """Graph's error code and message, without its request ids and dates."""
    try:
        error = answer.json().get("error") or {}
        return f"HTTP {answer.status_code} {error['code']}: {error.get('message') or ''}".strip()
    except (ValueError, AttributeError, KeyError, TypeError):
        return _status(answer)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run *work* to the end from synchronous code, also when the caller is itself inside an
    event loop (then in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()
