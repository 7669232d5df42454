"""Warnings before a credential the nights depend on runs out: the Entra app's certificate (read
from its PEM) or its client secret (the date configured as ``client_secret_expires``).

The AD target signs in with a password and trusts the DC through a CA bundle: it has no client
certificate of its own, so there is nothing of it to warn about here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.config import Config

DEFAULT_DAYS = 30


def expiry_warnings(config: Config, today: dt.date) -> list[str]:
    """What runs out within ``notify.expiry_warning_days`` (default 30) of *today*, or has
    already, each as a sentence that says what to do."""
    days = config.notify.expiry_warning_days if config.notify is not None else DEFAULT_DAYS
    entra = config.target.entra if config.target is not None else None
    warnings: list[str] = []
    if entra is None:
        return warnings
    renew_certificate = (
        f"upload a new certificate to the app registration {entra.client_id} (Certificates & "
        "secrets) and point target.entra.certificate at its PEM"
    )
    if entra.certificate is not None:
        ends = certificate_end(entra.certificate)
        if ends is None:
            warnings.append(
                f"cannot read the certificate in {entra.certificate} to check when it runs out "
                "(no PEM certificate in the file)"
            )
        else:
            warnings += _warning(
                f"the certificate of the Entra app ({entra.certificate})",
                ends,
                today,
                days,
                renew_certificate,
            )
    if entra.client_secret_expires is not None:
        warnings += _warning(
            f"the client secret of the Entra app {entra.client_id}",
            entra.client_secret_expires,
            today,
            days,
            f"make a new client secret in the app registration (Certificates & secrets), put it "
            f"where {entra.client_secret} is read from, and set client_secret_expires to its "
            "expiry date",
        )
    return warnings


def certificate_end(path: Path) -> dt.date | None:
    """The last day of the first certificate in the PEM file *path* (the app's own comes first;
    a key in the same file is skipped), or None when there is none."""
    # Imported here: cryptography comes with the [entra] extra, which a certificate needs anyway;
    # reading a configuration must not need it.
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        return None
    return certificates[0].not_valid_after_utc.date() if certificates else None


def _warning(what: str, ends: dt.date, today: dt.date, days: int, remedy: str) -> list[str]:
    left = (ends - today).days
    if left < 0:
        return [f"{what} ran out on {ends}: Entra ID refuses the sign-in, no night runs; {remedy}"]
    if left <= days:
        when = "today" if left == 0 else f"in {left} day{'' if left == 1 else 's'}"
        return [f"{what} runs out on {ends} ({when}): then no night can run; {remedy}"]
    return []
