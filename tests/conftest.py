"""Shared fixtures: the project's own Informat server on 127.0.0.1, started once per session, and
a throwaway Samba AD domain controller for the AD tests, also once per session."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner import log
from provisioner.secret import Secret
from provisioner.sources.informat.settings import InformatConfig, Timeouts
from provisioner.sources.informat_rest.settings import InformatRestConfig
from tests.fakes.informat_rest_server import CLIENT_ID, CLIENT_SECRET, InformatRestServer
from tests.fakes.informat_server import InformatServer
from tests.fakes.samba import SambaDC, unavailable_reason
from tests.fakes.synthetic import SyntheticData, generate
from tests.fakes.tls import TestCA, make_test_ca

LOGIN = "webservices@school.be"
PASSWORD = "geheim"
INSTELNRS = ["030569", "030577"]
SCHOOLJAAR = "2025-26"
# A day inside the school year, so that tests do not depend on when they run.
REFERENCE_DAY = dt.date(2026, 1, 15)


@pytest.fixture(scope="session")
def synthetic() -> SyntheticData:
    return generate(150, instelnrs=INSTELNRS, schooljaar=SCHOOLJAAR, seed=7)


@pytest.fixture(scope="session")
def informat_server(synthetic: SyntheticData) -> Iterator[InformatServer]:
    with InformatServer(synthetic, today=REFERENCE_DAY) as server:
        yield server


@pytest.fixture
def server(informat_server: InformatServer) -> Iterator[InformatServer]:
    """The session's server with a clean fault list and request log for each test."""
    informat_server.clear_faults()
    informat_server.requests.clear()
    yield informat_server
    informat_server.clear_faults()


def informat_config(url: str, **overrides: object) -> InformatConfig:
    values: dict[str, object] = {
        "instelnrs": list(INSTELNRS),
        "url": url,
        "login": LOGIN,
        "password": Secret(PASSWORD, "test"),
        "schooljaar": SCHOOLJAAR,
        "timeout": Timeouts(connect=2.0, read=10.0),
    }
    values.update(overrides)
    return InformatConfig(**values)  # type: ignore[arg-type]


def snapshot_config(directory: Path, **overrides: object) -> InformatConfig:
    values: dict[str, object] = {"instelnrs": list(INSTELNRS), "snapshot": directory}
    values.update(overrides)
    return InformatConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def rest_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return make_test_ca(tmp_path_factory.mktemp("informat-rest-ca"))


@pytest.fixture(scope="session")
def informat_rest_server(synthetic: SyntheticData, rest_ca: TestCA) -> Iterator[InformatRestServer]:
    """Informat's REST APIs over TLS, serving the same synthetic schools as ``informat_server``."""
    with InformatRestServer(synthetic, tls=rest_ca.server_context()) as server:
        yield server


@pytest.fixture
def rest_server(informat_rest_server: InformatRestServer) -> Iterator[InformatRestServer]:
    """The session's REST server with no faults, tokens, refusals or requests left over."""
    informat_rest_server.clear()
    yield informat_rest_server
    informat_rest_server.clear()


def rest_config(
    server: InformatRestServer, ca_file: Path, **overrides: object
) -> InformatRestConfig:
    values: dict[str, object] = {
        "instelnrs": list(INSTELNRS),
        "client_id": CLIENT_ID,
        "client_secret": Secret(CLIENT_SECRET, "test"),
        "token_url": server.token_url,
        "students_url": server.url,
        "employees_url": server.url,
        "schooljaar": SCHOOLJAAR,
        "ca_file": ca_file,
        "timeout": Timeouts(connect=2.0, read=10.0),
    }
    values.update(overrides)
    return InformatRestConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """One Samba AD DC (SCHOOL.TEST, DC=school,DC=test) on 127.0.0.1 for the whole session.

    Started on first use (about 4-8 s: provisioning dominates), stopped and deleted at the end.
    Tests share it, so each creates what it needs under an OU of its own and removes it. Without
    Samba or root it skips outside CI, but fails under CI=true: a CI machine that lost its Samba
    install must not pass by skipping every AD test. See docs/samba-dc.md.
    """
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"CI=true but no Samba AD DC can run here: {reason}", pytrace=False)
        pytest.skip(f"no Samba AD DC here: {reason}")
    with SambaDC() as dc:
        yield dc


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    """Each test starts with the secrets registered before it: a test's own password ("wrong")
    must not be redacted out of another test's expected message."""
    before = {prefix: set(spellings) for prefix, spellings in log._SECRETS.items()}
    yield
    log._SECRETS.clear()
    log._SECRETS.update(before)
