"""The ``source.informat`` section of provisioner.yaml."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from provisioner.checks import positive
from provisioner.errors import ConfigError
from provisioner.secret import Secret
from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.params import (
    QueryOptions,
    check_day_option,
    check_schooljaar,
    normalise_instelnr,
)
from provisioner.yamlnodes import existing

Transport = Literal["get", "post", "soap"]


def check_instelnrs(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("name at least one instellingsnummer")
    normalised = [normalise_instelnr(v) for v in values]
    if len(set(normalised)) != len(normalised):
        raise ValueError("an instellingsnummer is listed twice")
    return normalised


def _check_datasets(values: list[str]) -> list[str]:
    for name in values:
        try:
            operation(name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return values


def _check_digits(value: str) -> str:
    if value and not value.isdigit():
        raise ValueError(f"expected digits (like 311), not {value!r}")
    return value


def check_service_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"expected an https:// URL, not {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The login and password travel in the query string or body: never in clear text.
        raise ValueError("plain http is only allowed to this machine (127.0.0.1, ::1, localhost)")
    return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Timeouts:
    connect: float = field(default=10.0, metadata={"check": positive})
    read: float = field(default=300.0, metadata={"check": positive})
    """Informat sends a whole data set in one answer; large schools take minutes."""


@dataclass
class InformatConfig:
    instelnrs: list[str] = field(metadata={"check": check_instelnrs})
    url: str | None = field(default=None, metadata={"check": check_service_url})
    """Base URL ending in ``wsInformat.asmx``; both ``/wsInformat.asmx`` and
    ``/wsInfSoft/wsInformat.asmx`` are in use."""
    snapshot: Path | None = field(default=None, metadata={"check": existing})
    """A directory written by ``provisioner fetch --save``, read instead of the service."""
    login: str = ""
    password: Secret | None = None
    schooljaar: str = field(default="auto", metadata={"check": check_schooljaar})
    transport: Transport = "get"
    referentiedatum: str = field(default="", metadata={"check": check_day_option})
    hoofdstructuur: str = field(default="", metadata={"check": _check_digits})
    gewijzigd_sinds: str = field(default="", metadata={"check": check_day_option})
    personeelsgroep: str = ""
    referentiedatum_npre: str = field(default="", metadata={"check": check_day_option})
    met_nsu_uren: Literal["", "Ja", "Nee"] = ""
    pre_registration_id: str = ""
    smartschoolplatform: str = ""
    discimusvestigingsnr: str = ""
    nascholingen_begindatum: str = field(default="", metadata={"check": check_day_option})
    nascholingen_einddatum: str = field(default="", metadata={"check": check_day_option})
    datasets: list[str] | None = field(default=None, metadata={"check": _check_datasets})
    """Data sets ``fetch`` reads when the command line names none."""
    timeout: Timeouts = field(default_factory=Timeouts)
    concurrency: int = 4
    retries: int = 3
    """Attempts after the first for transient failures (connection reset, 502/503/504)."""
    max_answer_mb: float = field(default=1024.0, metadata={"check": positive})
    """The largest answer accepted for one data set of one school, in MB (1 MB = 1,048,576
    bytes), counted while it downloads and when a snapshot is read; a larger one is an error
    rather than a machine out of memory."""
    ca_file: Path | None = None
    """A CA bundle trusted instead of the system store (a proxy or a private CA); certificates
    are always verified."""

    def __post_init__(self) -> None:
        if (self.url is None) == (self.snapshot is None):
            raise ValueError("give exactly one of url (the web service) or snapshot (a directory)")
        if self.url is not None and (not self.login or self.password is None):
            raise ValueError("url needs login and password (password: ${ENV_VAR} or file:PATH)")
        if not 1 <= self.concurrency <= 16:
            raise ValueError("concurrency must be between 1 and 16")
        if not 0 <= self.retries <= 10:
            raise ValueError("retries must be between 0 and 10")

    @property
    def max_answer_bytes(self) -> int:
        return round(self.max_answer_mb * (1 << 20))

    def query_options(self, today: dt.date) -> QueryOptions:
        return QueryOptions.resolve(
            today,
            login=self.login,
            password=self.password.reveal() if self.password else "",
            schooljaar=self.schooljaar,
            referentiedatum=self.referentiedatum,
            hoofdstructuur=self.hoofdstructuur,
            gewijzigd_sinds=self.gewijzigd_sinds,
            personeelsgroep=self.personeelsgroep,
            referentiedatum_npre=self.referentiedatum_npre,
            met_nsu_uren=self.met_nsu_uren,
            pre_registration_id=self.pre_registration_id,
            smartschoolplatform=self.smartschoolplatform,
            discimusvestigingsnr=self.discimusvestigingsnr,
            begindatum=self.nascholingen_begindatum,
            einddatum=self.nascholingen_einddatum,
        )
