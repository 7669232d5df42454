"""The Informat REST source against the project's own REST server (over TLS, from the same
synthetic schools as the web-service fake): tokens, faults, blocks, snapshots, and the same
desired state from the default mappings whichever source serves the school."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.errors import AuthenticationError, ConfigError, SourceError
from provisioner.mapping.engine import build_desired, compile_mappings, fields_to_fetch
from provisioner.mapping.spec import load_mappings
from provisioner.sources import open_source
from provisioner.sources.informat.source import EMPTY_ANSWER, InformatSource
from provisioner.sources.informat_rest.client import RestClient
from provisioner.sources.informat_rest.datasets import ENDPOINTS
from provisioner.sources.informat_rest.settings import InformatRestConfig
from provisioner.sources.informat_rest.source import REFUSED, InformatRestSource
from tests.conftest import INSTELNRS, REFERENCE_DAY, SCHOOLJAAR, informat_config, rest_config

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"
DEFAULT_FIELDS = {
    "Lln": ["Klascode", "Naam", "Voornaam", "school", "voorlopig"],
    "Subgroepen": ["EinddatumKlas", "Groeptype", "Instelnr", "Klascode", "School"],
    "Leerkrachten": ["Actief", "Naam", "Voornaam"],
    "LeerkrachtenVrijevelden": ["OmschrijvingVrijVeld", "WaardeVrijVeld"],
}


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def school_names(synthetic) -> dict[str, str]:
    return {row["instelnr"]: row["school"] for row in synthetic.rows["Lln"]}


@pytest.fixture
def rest(rest_server, rest_ca, synthetic):
    """A function making the REST source for the test server (settings as keywords)."""

    def make(sleep=None, clock=None, **overrides) -> InformatRestSource:
        overrides.setdefault("school_names", school_names(synthetic))
        config = rest_config(rest_server, rest_ca.ca_file, **overrides)
        return InformatRestSource(
            config, today=REFERENCE_DAY, sleep=Sleeps() if sleep is None else sleep, clock=clock
        )

    return make


def desired_of(source):
    compiled = compile_mappings(load_mappings(MAPPINGS), source.datasets())
    read = source.read(fields_to_fetch(compiled))
    offered = source.datasets()
    desired = build_desired(
        compiled,
        read.rows,
        today=read.as_of,
        problems=read.problems,
        documented={name: info.documented_fields for name, info in offered.items()},
        unavailable={name: info.unavailable for name, info in offered.items()},
    )
    return read, desired


# --- the key test: the same school served both ways ----------------------------------------------
def test_the_default_mappings_give_the_same_desired_state_from_either_source(server, rest):
    ws_read, by_web_service = desired_of(
        InformatSource(informat_config(server.url), today=REFERENCE_DAY)
    )
    rest_read, by_rest = desired_of(rest())
    assert ws_read.counts == rest_read.counts  # the same rows per data set and school
    for name, dataset in ws_read.rows.datasets.items():
        # Row for row the same values, dates too (the web service's forms and REST's alike come
        # as ISO days); only Klastitularis is the web service's alone.
        def rows(rows_of):
            return sorted(
                (nr, sorted((k, v) for k, v in row.items() if k != "Klastitularis"))
                for nr, row in rows_of.rows
            )

        assert rows(rest_read.rows.datasets[name]) == rows(dataset), name
    assert not ws_read.blocks and not rest_read.blocks
    assert not by_web_service.report.errors and not by_rest.report.errors
    assert len(by_rest.accounts) > 100
    # Every account the same: anchor, username, OU, every attribute and the fields it came from.
    assert by_rest.accounts == by_web_service.accounts
    assert by_rest.ous == by_web_service.ous
    assert by_rest.groups.keys() == by_web_service.groups.keys()
    for key, group in by_web_service.groups.items():
        # The one difference: REST does not say who a class's titularis is (docs/informat.md).
        assert by_rest.groups[key] == dataclasses.replace(group, owners=set()), key
    assert any(g.owners for g in by_web_service.groups.values())
    assert not any(g.owners for g in by_rest.groups.values())
    (warning,) = [w for w in by_rest.report.warnings if "Klastitularis" in w]
    assert "Subgroepen.Klastitularis is always empty with this source" in warning
    assert not any("Klastitularis" in w for w in by_web_service.report.warnings)


def test_only_the_fields_the_mappings_use_are_kept(rest):
    read = rest().read(DEFAULT_FIELDS)
    for name, fields in DEFAULT_FIELDS.items():
        dataset = read.rows.datasets[name]
        key = dataset.key
        assert {f for _nr, row in dataset.rows for f in row} <= {*fields, key}, name


def test_only_the_endpoints_the_fields_need_are_fetched(rest, rest_server):
    rest().read({"Leerkrachten": ["Naam"], "Subgroepen": ["Klascode", "Groeptype"]})
    # No pupil's name is read: /1/students is not asked for.
    assert {r.path for r in rest_server.requests} == {
        "/connect/token",
        "/employees",
        "/1/registrations",
    }


def test_rest_only_data_sets_carry_rest_fields(rest, synthetic):
    read = rest().read({"registrations": ["isOkan", "persoonId"], "employees": None})
    registration = read.rows.datasets["registrations"].rows[0][1]
    assert set(registration) == {"pPersoon", "isOkan", "persoonId"}
    assert registration["isOkan"] == "false"
    employee = read.rows.datasets["employees"].rows[0][1]
    assert employee["geboortedatum"].count("-") == 2 and "T" not in employee["geboortedatum"]


def test_the_documented_headers_and_a_token_per_school_and_api(rest, rest_server):
    rest().read(DEFAULT_FIELDS)
    tokens = [r for r in rest_server.requests if r.path == "/connect/token"]
    assert sorted(r.form["scope"] for r in tokens) == sorted(
        f"api_informat_sas_{api}.{api}.{nr}"
        for api in ("leerlingen", "personeel")
        for nr in ("030569", "030577")
    )
    assert all(r.form["grant_type"] == "client_credentials" for r in tokens)
    calls = [r for r in rest_server.requests if r.path != "/connect/token"]
    assert {r.path for r in calls} == {
        "/1/students",
        "/1/registrations",
        "/employees",
        "/employees/OwnFields",
    }
    for call in calls:
        assert call.headers["Authorization"].startswith("Bearer ")
        assert call.headers["InstituteNo"] in ("030569", "030577")
        assert call.query == {"schoolYear": SCHOOLJAAR}
        assert (call.headers.get("Api-Version") == "2") == call.path.startswith("/employees")


# --- tokens --------------------------------------------------------------------------------------
def test_a_token_is_kept_until_shortly_before_it_expires(rest_server, rest_ca):
    now = [1000.0]
    config = rest_config(rest_server, rest_ca.ca_file)
    with RestClient(config, sleep=Sleeps(), clock=lambda: now[0]) as client:
        for _ in range(3):
            client.fetch(ENDPOINTS["students"], "030569", {"schoolYear": SCHOOLJAAR})
        assert rest_server.token_requests() == 1
        client.fetch(ENDPOINTS["students"], "030577", {"schoolYear": SCHOOLJAAR})
        assert rest_server.token_requests() == 2  # another school, another token
        now[0] += rest_server.token_lifetime - 61  # still valid with a minute to spare
        client.fetch(ENDPOINTS["students"], "030569", {"schoolYear": SCHOOLJAAR})
        assert rest_server.token_requests() == 2
        now[0] += 2  # within the last minute: renewed before it lapses
        client.fetch(ENDPOINTS["students"], "030569", {"schoolYear": SCHOOLJAAR})
        assert rest_server.token_requests() == 3


def test_a_token_the_server_let_expire_is_renewed_once(rest_server, rest_ca):
    with RestClient(rest_config(rest_server, rest_ca.ca_file), sleep=Sleeps()) as client:
        client.fetch(ENDPOINTS["registrations"], "030569", {"schoolYear": SCHOOLJAAR})
        rest_server.expire_tokens()
        answer = client.fetch(ENDPOINTS["registrations"], "030569", {"schoolYear": SCHOOLJAAR})
        assert answer.items
        assert rest_server.token_requests() == 2


def test_a_401_after_renewal_is_a_clear_error(rest_server, rest):
    rest_server.inject("401", times=None)
    with pytest.raises(AuthenticationError, match=r"/1/registrations for 030569: HTTP 401"):
        rest(concurrency=1).read(DEFAULT_FIELDS)  # one school at a time: its tokens alone
    assert rest_server.token_requests() == 2  # renewed once, not in a loop


def test_wrong_client_credentials_are_a_clear_error(rest, rest_server):
    from provisioner.secret import Secret

    with pytest.raises(AuthenticationError, match="refused client_id 'provisioner-test'"):
        rest(client_secret=Secret("fout", "test")).read(DEFAULT_FIELDS)


# --- a school without rights: a block for that school, the others read -----------------------------
def test_a_refused_scope_blocks_only_that_school(rest, rest_server):
    rest_server.refused_apis.add(("030577", "leerlingen"))
    read = rest().read(DEFAULT_FIELDS)
    blocked = {(b.dataset, b.unit) for b in read.blocks}
    assert blocked == {("Lln", "030577"), ("Subgroepen", "030577")}
    block = next(b for b in read.blocks if b.dataset == "Lln")
    assert block.reason == REFUSED
    assert "api_informat_sas_leerlingen.leerlingen.030577 is refused" in block.hint
    assert read.counts["Lln"]["030569"] > 0 and read.counts["Lln"]["030577"] == 0
    assert read.counts["Leerkrachten"]["030577"] > 0  # its staff scope is fine


def test_a_403_of_the_api_blocks_only_that_school(rest, rest_server):
    rest_server.inject("403", path="/employees", instelnr="030569", times=None)
    read = rest().read(DEFAULT_FIELDS)
    assert {(b.dataset, b.unit) for b in read.blocks} == {
        ("Leerkrachten", "030569"),
        ("LeerkrachtenVrijevelden", "030569"),
    }
    hint = read.blocks[0].hint
    assert "HTTP 403" in hint and "MNA001" in hint
    assert read.counts["Leerkrachten"]["030577"] > 0


@pytest.mark.parametrize("concurrency", [1, 2])
def test_schools_are_read_at_once(rest, rest_server, concurrency):
    """Schools are read `concurrency` at a time (each its endpoints in turn): two schools whose
    students answer slowly take the slow answer's time once, not twice; one at a time, twice.
    What is read is the same either way."""
    before = rest().read(DEFAULT_FIELDS)
    slow = 1.5
    for instelnr in INSTELNRS:
        rest_server.inject(f"slow:{slow}", path="/1/students", instelnr=instelnr)
    started = time.perf_counter()
    read = rest(concurrency=concurrency).read(DEFAULT_FIELDS)
    elapsed = time.perf_counter() - started
    if concurrency == 1:
        assert elapsed >= 2 * slow
    else:
        assert elapsed < 2 * slow - 0.1, f"{elapsed:.2f} s: the schools were read in turn"
    assert (read.digest, read.counts, read.blocks) == (before.digest, before.counts, [])


def test_an_empty_array_blocks_that_school(rest, rest_server):
    rest_server.inject("empty", path="/1/registrations", instelnr="030577")
    read = rest().read(DEFAULT_FIELDS)
    assert {(b.dataset, b.unit, b.reason) for b in read.blocks} == {
        ("Lln", "030577", EMPTY_ANSWER),
        ("Subgroepen", "030577", EMPTY_ANSWER),
    }


def test_a_plan_is_blocked_when_a_school_is_refused(rest, rest_server):
    from provisioner.plan.planner import Origin, Rules, make_plan
    from tests.test_plan import observed_from

    _read, everyone = desired_of(rest())
    directory = observed_from(everyone)  # the directory holds every account of both schools
    rest_server.refused_apis.add(("030577", "leerlingen"))
    read, tonight = desired_of(rest())
    origin = Origin("c", "m", read.digest, read.as_of, "test directory")
    plan = make_plan(
        tonight,
        directory,
        origin=origin,
        rules=Rules(driving={"Lln", "Leerkrachten"}),
        source_blocks=read.blocks,
    )
    assert any(
        "Lln for 030577 was refused by Informat: nothing is applied, so that nobody is disabled "
        "on an incomplete read" in b
        for b in plan.header.blocked
    )


@contextlib.contextmanager
def served(server, instelnr: str, endpoint: str, change):
    """The REST server answering *endpoint* for *instelnr* with its items changed by *change*
    (a function of a copy of them) for the duration; the session's data as it was afterwards."""
    original = server.view[instelnr][endpoint]
    server.view[instelnr][endpoint] = change(copy.deepcopy(original))
    try:
        yield
    finally:
        server.view[instelnr][endpoint] = original


def test_an_unreadable_date_holds_only_its_person(rest, rest_server):
    def impossible(registrations):
        registrations[0]["begindatum"] = "2025-02-31T00:00:00"
        return registrations

    with served(rest_server, "030569", "registrations", impossible):
        pupil = str(rest_server.view["030569"]["registrations"][0]["pPersoon"])
        read = rest().read({"Lln": ["begindatum", "Naam"]})
    (problem,) = read.problems
    assert (problem.dataset, problem.unit, problem.key, problem.field) == (
        "Lln",
        "030569",
        pupil,
        "begindatum",
    )
    assert "month 2 of 2025 has no day 31" in problem.reason
    rows = [r for nr, r in read.rows.datasets["Lln"].rows if r["p_persoon"] == pupil]
    assert rows and all("begindatum" not in r for r in rows)  # the row still comes, without it
    assert not read.blocks


def test_a_guessed_field_that_no_row_has_blocks_the_school(rest, rest_server):
    """The /employees field names are unverified: were ``isActief`` called otherwise, every
    staff member would look inactive and leave; the school is blocked instead."""

    def without_active(employees):
        return [{k: v for k, v in e.items() if k != "isActief"} for e in employees]

    with served(rest_server, "030569", "employees", without_active):
        read = rest().read({"Leerkrachten": ["Actief", "Naam"]})
    (block,) = read.blocks
    assert (block.dataset, block.unit, block.reason) == (
        "Leerkrachten",
        "030569",
        "gave no Actief in any row",
    )
    assert "unverified" in block.hint


# --- transient faults: retried, bounded, then a clear error ---------------------------------------
def test_429_waits_as_long_as_retry_after_says(rest, rest_server):
    rest_server.inject("429:7", path="/1/students", times=2)
    sleeps = Sleeps()
    read = rest(sleep=sleeps).read(DEFAULT_FIELDS)
    assert sleeps == [7.0, 7.0]
    assert not read.blocks


def test_503_is_retried_with_backoff_then_an_error(rest, rest_server):
    rest_server.inject("503", path="/1/registrations", instelnr="030569", times=None)
    sleeps = Sleeps()
    with pytest.raises(SourceError) as caught:
        rest(sleep=sleeps).read(DEFAULT_FIELDS)
    assert str(caught.value) == (
        "Informat REST /1/registrations for 030569: HTTP 503 (tried 4 times)"
    )
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_slow_answer_times_out_into_an_error(rest, rest_server):
    from provisioner.sources.informat.settings import Timeouts

    rest_server.inject("slow:1.5", path="/employees", times=None)
    with pytest.raises(SourceError, match=r"/employees for 030569: no answer from 127\.0\.0\.1"):
        rest(retries=1, timeout=Timeouts(connect=2.0, read=0.3)).read({"Leerkrachten": ["Naam"]})


def test_a_cut_off_answer_is_retried_and_an_error_when_it_stays_cut_off(rest, rest_server):
    rest_server.inject("truncated", path="/1/students", times=1)
    assert rest().read({"Lln": ["Naam"]}).counts["Lln"]["030569"] > 0
    rest_server.inject("truncated", path="/1/students", times=None)
    with pytest.raises(SourceError, match=r"/1/students for 030569: the answer was cut off"):
        rest(retries=1).read({"Lln": ["Naam"]})


def test_malformed_json_is_an_error(rest, rest_server):
    rest_server.inject("malformed", path="/employees/OwnFields", instelnr="030569")
    with pytest.raises(
        SourceError, match=r"/employees/OwnFields for 030569: the answer is not JSON"
    ):
        rest().read(DEFAULT_FIELDS)


def test_informat_error_codes_name_the_school_and_the_endpoint(rest_server, rest_ca):
    with (
        RestClient(rest_config(rest_server, rest_ca.ca_file), sleep=Sleeps()) as client,
        pytest.raises(SourceError) as caught,
    ):
        client.fetch(ENDPOINTS["students"], "030569", {})  # no schoolYear
    assert str(caught.value) == (
        "Informat REST /1/students for 030569: HTTP 400 (Informat says BR035B: schoolYear is "
        "verplicht)"
    )


def test_an_untrusted_certificate_is_refused(rest_server):
    config = rest_config(rest_server, None)  # the system's trust store does not know the test CA
    with pytest.raises(SourceError, match=r"TLS certificate of 127\.0\.0\.1 is not trusted"):
        InformatRestSource(config, today=REFERENCE_DAY).read({"Lln": ["Naam"]})


# --- snapshots -----------------------------------------------------------------------------------
def test_a_snapshot_reproduces_the_read_blocks_included(
    rest, rest_server, rest_ca, tmp_path, synthetic
):
    rest_server.refused_apis.add(("030577", "personeel"))
    live = rest().read(DEFAULT_FIELDS, save=tmp_path / "snap")
    manifest = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert manifest["api"] == "informat_rest"
    assert manifest["refused"][0]["instelnr"] == "030577"
    assert (tmp_path / "snap" / "registrations" / "030569.json").stat().st_mode & 0o077 == 0
    config = InformatRestConfig(
        instelnrs=["030569", "030577"],
        snapshot=tmp_path / "snap",
        school_names=school_names(synthetic),
    )
    again = InformatRestSource(config).read(DEFAULT_FIELDS)
    assert again.rows == live.rows
    assert again.blocks == live.blocks and again.blocks
    assert again.digest == live.digest
    assert again.as_of == REFERENCE_DAY


def test_a_web_service_snapshot_is_not_read_as_a_rest_one(server, tmp_path):
    InformatSource(informat_config(server.url), today=REFERENCE_DAY).read(
        {"Lln": ["Naam"]}, save=tmp_path / "ws"
    )
    config = InformatRestConfig(instelnrs=["030569", "030577"], snapshot=tmp_path / "ws")
    with pytest.raises(SourceError, match="a snapshot of the web service, not of the REST API"):
        InformatRestSource(config).read({"Lln": ["Naam"]})


# --- configuration and validate ----------------------------------------------------------------
def write_config(tmp_path, rest_server, rest_ca, extra: str = "") -> Path:
    path = tmp_path / "provisioner.yaml"
    path.write_text(
        f"mappings: {MAPPINGS}\n"
        "source:\n  informat_rest:\n"
        f"    token_url: {rest_server.token_url}\n"
        f"    students_url: {rest_server.url}\n"
        f"    employees_url: {rest_server.url}\n"
        "    client_id: provisioner-test\n"
        "    client_secret: ${TEST_REST_SECRET}\n"
        "    schooljaar: 2025-26\n"
        f"    referentiedatum: {REFERENCE_DAY:%d-%m-%Y}\n"
        "    instelnrs: [30569, '030577']\n"
        f"    ca_file: {rest_ca.ca_file}\n" + extra
    )
    return path


def test_validate_names_the_fields_rest_cannot_give(
    tmp_path, rest_server, rest_ca, monkeypatch, capsys
):
    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    config = write_config(tmp_path, rest_server, rest_ca)  # no school_names
    main(["validate", "--config", str(config)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Subgroepen.Klastitularis is always empty with this source" in text
    assert (
        "Lln.school is always empty with this source: the REST API does not give a school's name"
        in text
    )


def test_the_configuration_reads_and_checks_the_rest_section(
    tmp_path, rest_server, rest_ca, monkeypatch
):
    from provisioner.config import load_config

    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    config = load_config(
        write_config(
            tmp_path, rest_server, rest_ca, "    school_names: {30569: Sint-Jozefscollege}\n"
        )
    )
    assert config.source.kind == "informat_rest"
    settings = config.source.settings
    assert settings.instelnrs == ["030569", "030577"]
    assert settings.school_names == {"030569": "Sint-Jozefscollege"}
    assert settings.client_secret.reveal() == "rest-geheim"
    assert isinstance(open_source("informat_rest", settings), InformatRestSource)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    retries: 11\n", "retries must be between 0 and 10"),
        ("    school_names: {'030999': X}\n", "school_names names 030999, not among instelnrs"),
        ("    datasets: [Lnn]\n", "unknown Informat REST data set 'Lnn' (did you mean Lln?)"),
    ],
)
def test_configuration_mistakes_are_precise(
    tmp_path, rest_server, rest_ca, monkeypatch, extra, message
):
    from provisioner.config import load_config

    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    with pytest.raises(
        ConfigError, match=r"provisioner\.yaml:\d+: source\.informat_rest"
    ) as caught:
        load_config(write_config(tmp_path, rest_server, rest_ca, extra))
    assert message in str(caught.value)


def test_a_secret_written_in_the_file_is_refused(tmp_path, rest_server, rest_ca):
    from provisioner.config import load_config

    path = write_config(tmp_path, rest_server, rest_ca)
    path.write_text(path.read_text().replace("${TEST_REST_SECRET}", "letterlijk-geheim"))
    with pytest.raises(ConfigError, match="client_secret"):
        load_config(path)


def test_plain_http_to_another_host_is_refused(tmp_path, rest_server, rest_ca, monkeypatch):
    from provisioner.config import load_config

    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    path = write_config(tmp_path, rest_server, rest_ca)
    path.write_text(
        path.read_text().replace(rest_server.token_url, "http://identity.example.be/connect/token")
    )
    with pytest.raises(ConfigError, match="token_url: plain http is only allowed to this machine"):
        load_config(path)


def test_fetch_saves_a_snapshot_the_next_configuration_reads(
    tmp_path, rest_server, rest_ca, monkeypatch, capsys
):
    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    config = write_config(tmp_path, rest_server, rest_ca)
    assert main(["fetch", "--config", str(config), "--save", str(tmp_path / "snap")]) == 0
    live = capsys.readouterr().out
    assert f"Informat REST 2025-26 from {rest_server.url}" in live
    offline = tmp_path / "offline.yaml"
    offline.write_text(
        f"mappings: {MAPPINGS}\nsource:\n  informat_rest:\n    snapshot: snap\n"
        "    instelnrs: ['030569', '030577']\n"
    )
    assert main(["fetch", "--config", str(offline)]) == 0
    again = capsys.readouterr().out
    assert f"Informat REST 2025-26 from snapshot {tmp_path / 'snap'}" in again
    # The same counts per data set and school, read from the files.
    assert live.split("\n", 1)[1] == again.split("\n", 1)[1]


# --- a real directory ----------------------------------------------------------------------------
def test_a_refused_school_changes_nothing_in_the_directory(
    samba_dc, rest_server, rest_ca, synthetic, tmp_path, monkeypatch, capsys
):
    """The night after Informat took the REST client's rights on one school away: blocked, and
    every account of that school is exactly as it was (nobody disabled)."""
    import secrets

    from tests.scenarios import ad_target
    from tests.test_ad import users_below

    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    root = f"OU=t{secrets.token_hex(4)}"
    names = "".join(f"      '{nr}': {name}\n" for nr, name in school_names(synthetic).items())
    config = write_config(
        tmp_path,
        rest_server,
        rest_ca,
        f"    school_names:\n{names}state: state.db\npolicy:\n  freeze_leavers: []\n"
        + ad_target(samba_dc, root),
    )
    try:
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        before = users_below(samba_dc, root)
        assert sum(1 for u in before if u.startswith("lln-")) > 100
        rest_server.refused_apis.add(("030577", "leerlingen"))
        assert main(["apply", "--config", str(config), "--approve", "trying to force it"]) == 2
        out = capsys.readouterr().out
        assert "BLOCKED: Lln for 030577 was refused by Informat" in out
        assert users_below(samba_dc, root) == before  # nobody disabled, nothing changed
    finally:
        samba_dc.connect().delete(
            f"{root},{samba_dc.base_dn}", controls=[("1.2.840.113556.1.4.805", True, None)]
        )


@pytest.mark.parametrize("document", ["docs/informat.md", "README.md"])
def test_the_documented_configuration_reads(document, tmp_path, monkeypatch):
    import re

    from provisioner.config import load_config

    monkeypatch.setenv("INFORMAT_REST_SECRET", "x")
    text = (ROOT / document).read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "informat_rest:" in b]
    path = tmp_path / "provisioner.yaml"
    path.write_text(f"mappings: {MAPPINGS}\n{block}")
    settings = load_config(path).source.settings
    assert settings.token_url == "https://www.identityserver.be/connect/token"
    assert settings.school_names["030577"] == "Onze-Lieve-Vrouwinstituut"


def test_a_preview_of_the_next_school_year_asks_for_that_year(rest, rest_server):
    preview = rest().for_school_year("2026-27")
    read = preview.read({"Lln": ["Naam"]})
    assert read.as_of.isoformat() == "2026-09-01"
    assert {r.query["schoolYear"] for r in rest_server.requests if r.query} == {"2026-27"}
    # The fake knows only 2025-26: nothing yet, a block rather than "everybody left".
    assert {(b.dataset, b.reason) for b in read.blocks} == {("Lln", EMPTY_ANSWER)}
    with pytest.raises(ConfigError, match="name the school year to preview"):
        rest().for_school_year("auto")


def test_fields_names_what_this_source_cannot_give(
    tmp_path, rest_server, rest_ca, monkeypatch, capsys
):
    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    config = write_config(tmp_path, rest_server, rest_ca)  # no school_names
    assert main(["fields", "--config", str(config), "Subgroepen"]) == 0
    out = capsys.readouterr().out
    assert "Fields of Subgroepen this source cannot give (4)" in out
    assert "  Klastitularis: the REST API does not say who a class's titularis is" in out
    assert "  School: the REST API does not give a school's name" in out
    assert "(documented, in no row)" not in out
    assert "EinddatumKlas" in out and "T00:00:00" not in out  # dates as ISO days


def test_either_source_gives_the_same_plan(
    server, rest_server, rest_ca, synthetic, tmp_path, monkeypatch, capsys
):
    """``source: informat:`` switched to ``source: informat_rest:`` with the default mappings:
    the same changes in the plan (against an empty directory, as on the first night)."""
    from tests.scenarios import config_head

    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_REST_SECRET", "rest-geheim")
    (tmp_path / "ws").mkdir()
    (tmp_path / "rest").mkdir()
    by_web_service = tmp_path / "ws" / "provisioner.yaml"
    by_web_service.write_text(config_head(server.url, MAPPINGS))
    names = "".join(f"      '{nr}': {name}\n" for nr, name in school_names(synthetic).items())
    by_rest = write_config(tmp_path / "rest", rest_server, rest_ca, f"    school_names:\n{names}")
    plans = []
    for config in (by_web_service, by_rest):
        assert main(["plan", "--config", str(config), "--json"]) == 2
        plans.append(json.loads(capsys.readouterr().out))
    ws_plan, rest_plan = plans
    assert len(ws_plan["changes"]) > 200
    assert rest_plan["changes"] == ws_plan["changes"]
    assert rest_plan["header"]["blocked"] == ws_plan["header"]["blocked"] == []
