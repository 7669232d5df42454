"""The real Informat client against the project's own Informat server, over all three transports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.errors import AuthenticationError, SourceError
from provisioner.secret import Secret
from provisioner.sources.informat.client import InformatClient
from provisioner.sources.informat.operations import OPERATIONS, Operation, operation
from provisioner.sources.informat.params import dd_mm_yyyy
from provisioner.sources.informat.parser import normalise_date
from provisioner.sources.informat.reader import read_source
from tests.conftest import INSTELNRS, REFERENCE_DAY, informat_config
from tests.fakes.informat_server import InformatServer
from tests.fakes.tls import make_test_ca
from tests.strategies import XML_TEXT

TRANSPORTS = ["get", "post", "soap"]
ALL = list(OPERATIONS.values())


def expected_rows(synthetic, op: Operation, instelnr: str, day: dt.date = REFERENCE_DAY):
    """The rows the real service would answer: that instelnr, valid on the reference date."""
    rows = [r for r in synthetic.rows[op.name] if r["_instelnr"] == instelnr]
    if "referentiedatum" in op.params:
        iso = day.isoformat()
        rows = [
            r
            for r in rows
            if (r.get("_van") is None or r["_van"] <= iso)
            and (r.get("_tot") is None or iso <= r["_tot"])
        ]
    return rows


def as_record(row: dict, op: Operation) -> dict:
    """What the reader must make of one served row."""
    record = {}
    for name, value in row.items():
        if name.startswith("_") or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, list):
            record[name] = [as_record(child, op) for child in value if child is not None]
        elif name in op.date_fields:
            if (date := normalise_date(value)) is not None:
                record[name] = date
        elif name.lower() == "instelnr":
            record[name] = value.zfill(6)
        else:
            record[name] = value
    return record


class RecordingSleep:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_data_set_reads_faithfully_over_every_transport(server, synthetic, transport):
    config = informat_config(server.url, transport=transport, referentiedatum="15-01-2026")
    data = read_source(config, ALL, today=REFERENCE_DAY)
    for op in ALL:
        for nr in INSTELNRS:
            expected = [as_record(r, op) for r in expected_rows(synthetic, op, nr)]
            got = data.answers[op.name][nr]
            assert got == expected, f"{op.name} {nr} over {transport}"
    assert len(data.records("Lln")) > 100
    assert data.empty() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_declared_parameter_is_sent_in_wire_casing(server, transport):
    config = informat_config(server.url, transport=transport, concurrency=1)
    read_source(config, ALL, today=REFERENCE_DAY)
    seen = {(r.op, r.params["instelnr"]): r for r in server.requests}
    assert len(seen) == len(ALL) * len(INSTELNRS)
    for op in ALL:
        request = seen[(op.name, "030569")]
        assert request.transport == transport
        assert list(request.params) == list(op.params)
        assert request.params["login"] == "webservices@school.be"
        assert request.params["schooljaar"] == "2025-26"


def test_alternative_base_path_and_five_digit_instelnr(server, tmp_path, monkeypatch, synthetic):
    from provisioner.config import load_config

    monkeypatch.setenv("TEST_PW", "geheim")
    url = server.url.replace("/wsInformat.asmx", "/wsInfSoft/wsInformat.asmx")
    path = tmp_path / "p.yaml"
    path.write_text(
        f"source:\n  informat:\n    url: {url}\n    login: webservices@school.be\n"
        "    password: ${TEST_PW}\n    schooljaar: 2025-26\n    instelnrs: [30569]\n"
    )
    config = load_config(path).source.settings
    data = read_source(config, [operation("Subgroepen")], today=REFERENCE_DAY)
    assert server.requests[-1].params["instelnr"] == "030569"
    assert len(data.answers["Subgroepen"]["030569"]) == len(
        expected_rows(synthetic, operation("Subgroepen"), "030569")
    )
    assert {r["Instelnr"] for r in data.records("Subgroepen")} == {"030569"}


def test_duplicate_rows_are_kept_for_the_mapping_to_resolve(server, synthetic):
    config = informat_config(server.url)
    data = read_source(config, [operation("Lln")], today=REFERENCE_DAY)
    twice = synthetic.notable["double_registration"]
    rows = [r for r in data.records("Lln") if r["p_persoon"] == twice]
    assert sorted(r["voorlopig"] for r in rows) == ["0", "4"]


def test_referentiedatum_filters_leavers(server, synthetic):
    leaver = synthetic.notable["leaver"]
    lln = operation("Lln")
    row = next(r for r in synthetic.rows["Lln"] if r["p_persoon"] == leaver and r.get("_tot"))
    gone = dt.date.fromisoformat(row["_tot"]) + dt.timedelta(days=1)
    there = dt.date.fromisoformat(row["_tot"])

    def pupils(day: dt.date) -> set[str]:
        config = informat_config(server.url, referentiedatum=dd_mm_yyyy(day))
        return {r["p_persoon"] for r in read_source(config, [lln], today=day).records("Lln")}

    assert leaver in pupils(there)
    assert leaver not in pupils(gone)


def test_hoofdstructuur_and_gewijzigd_sinds_are_passed_and_filter(server, synthetic):
    relaties = operation("Relaties")
    everything = read_source(informat_config(server.url), [relaties], today=REFERENCE_DAY)
    recent = read_source(
        informat_config(server.url, gewijzigd_sinds="01-01-2026"), [relaties], today=REFERENCE_DAY
    )
    assert server.requests[-1].params["gewijzigdSinds"] == "1-1-2026"
    assert 0 < len(recent.records("Relaties")) < len(everything.records("Relaties"))
    only_311 = read_source(
        informat_config(server.url, hoofdstructuur="311"), [relaties], today=REFERENCE_DAY
    )
    expected = [r for r in synthetic.rows["Relaties"] if r.get("_hoofdstructuur") == "311"]
    assert len(only_311.records("Relaties")) == len(expected) < len(everything.records("Relaties"))


def test_an_instelnr_without_rights_is_reported_empty_not_missing(server):
    server.accounts["beperkt@school.be"] = ("ander", {"030569"})
    config = informat_config(
        server.url, login="beperkt@school.be", password=Secret("ander", "test")
    )
    data = read_source(config, [operation("Lln"), operation("Leerkrachten")], today=REFERENCE_DAY)
    assert data.counts()["Lln"]["030577"] == 0
    assert data.counts()["Lln"]["030569"] > 0
    assert data.empty() == [("Lln", "030577"), ("Leerkrachten", "030577")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_credentials_are_an_authentication_error_and_not_retried(server, transport):
    sleep = RecordingSleep()
    config = informat_config(server.url, transport=transport, password=Secret("fout", "test"))
    with pytest.raises(
        AuthenticationError, match="rejected the login: Ongeldige login of paswoord"
    ) as caught:
        read_source(config, [operation("Lln")], today=REFERENCE_DAY, sleep=sleep)
    assert sleep.calls == []
    assert "fout" not in str(caught.value)  # the password never appears in a message


@pytest.mark.parametrize("fault", ["503", "502", "504", "reset", "truncated"])
def test_transient_failures_are_retried_with_backoff(server, synthetic, fault):
    server.inject(fault, op="Subgroepen", instelnr="030569", times=2)
    sleep = RecordingSleep()
    config = informat_config(server.url, concurrency=1)
    data = read_source(config, [operation("Subgroepen")], today=REFERENCE_DAY, sleep=sleep)
    assert sleep.calls == [1.0, 2.0]
    assert len(data.answers["Subgroepen"]["030569"]) == len(
        expected_rows(synthetic, operation("Subgroepen"), "030569")
    )


def test_a_persistent_transient_failure_ends_in_a_clear_error(server):
    server.inject("503", op="Lln", times=10)
    sleep = RecordingSleep()
    config = informat_config(server.url, retries=2)
    with pytest.raises(SourceError, match=r"Lln for 0305(69|77): HTTP 503 .*\(tried 3 times\)"):
        read_source(config, [operation("Lln")], today=REFERENCE_DAY, sleep=sleep)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("html", r"HTML page"),
        ("html500", r"HTTP 500: "),
        ("malformed", r"malformed or truncated XML"),
        ("truncated_xml", r"malformed or truncated XML"),
        ("empty_body", r"the answer is empty"),
        ("soap_fault", r"Informat reported an error: "),
        ("500", r"HTTP 500"),
    ],
)
@pytest.mark.parametrize("transport", ["get", "soap"])
def test_bad_answers_are_errors_never_zero_rows(server, fault, message, transport):
    server.inject(fault, op="Lln", instelnr="030577")
    sleep = RecordingSleep()
    config = informat_config(server.url, transport=transport)
    with pytest.raises(SourceError, match=f"Informat Lln for 030577: .*{message}"):
        read_source(config, [operation("Lln")], today=REFERENCE_DAY, sleep=sleep)
    assert sleep.calls == []  # not a transient failure: retrying would give the same


def test_a_slow_answer_times_out_with_a_clear_message(server):
    server.inject("slow:3", op="Lln", instelnr="030569")
    config = informat_config(
        server.url,
        retries=0,
        timeout=dataclasses.replace(informat_config(server.url).timeout, read=0.5),
    )
    with pytest.raises(SourceError, match=r"Lln for 030569: no answer from 127\.0\.0\.1 within"):
        read_source(config, [operation("Lln")], today=REFERENCE_DAY)


def test_an_unreachable_host_is_a_clear_error():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = RecordingSleep()
    config = informat_config(
        f"http://127.0.0.1:{port}/wsInformat.asmx", retries=1, instelnrs=["030569"]
    )
    with pytest.raises(SourceError, match=r"cannot reach 127\.0\.0\.1: .*\(tried 2 times\)"):
        read_source(config, [operation("Lln")], today=REFERENCE_DAY, sleep=sleep)
    assert sleep.calls == [1.0]


def test_a_missing_parameter_is_reported_with_informats_words(server):
    lln = operation("Lln")
    broken = dataclasses.replace(lln, params=tuple(p for p in lln.params if p != "hoofdstructuur"))
    config = informat_config(server.url)
    with (
        InformatClient(config, config.query_options(REFERENCE_DAY)) as client,
        pytest.raises(SourceError, match=r"'.*Missing parameter: hoofdstructuur\.'"),
    ):
        client.fetch(broken, "030569")


def test_operation_names_are_case_sensitive_on_the_wire(server):
    wrong = dataclasses.replace(
        operation("LeerkrachtenVrijevelden"), name="LeerkrachtenVrijeVelden"
    )
    config = informat_config(server.url)
    with (
        InformatClient(config, config.query_options(REFERENCE_DAY)) as client,
        pytest.raises(SourceError, match="Request format is unrecognized"),
    ):
        client.fetch(wrong, "030569")


def test_one_failed_call_fails_the_whole_read(server, tmp_path):
    server.inject("malformed", op="LlnExtra", instelnr="030577")
    config = informat_config(server.url)
    target = tmp_path / "snap"
    with pytest.raises(SourceError, match="LlnExtra for 030577"):
        read_source(config, ALL, today=REFERENCE_DAY, save=target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no half-written snapshot left behind


def test_fields_limit_what_is_kept(server):
    config = informat_config(server.url)
    data = read_source(
        config, [operation("Lln")], fields={"Lln": ["Naam", "Klascode"]}, today=REFERENCE_DAY
    )
    assert {key for r in data.records("Lln") for key in r} == {"p_persoon", "Naam", "Klascode"}


@pytest.fixture(scope="module")
def tls_server(synthetic, tmp_path_factory):
    ca = make_test_ca(tmp_path_factory.mktemp("ca"))
    with InformatServer(synthetic, today=REFERENCE_DAY, tls=ca.server_context()) as server:
        yield server, ca


def test_tls_certificates_are_verified_by_default(tls_server):
    server, _ca = tls_server
    sleep = RecordingSleep()
    config = informat_config(server.url)
    assert server.url.startswith("https://127.0.0.1:")
    with pytest.raises(SourceError, match=r"TLS certificate of 127\.0\.0\.1 is not trusted"):
        read_source(config, [operation("Subgroepen")], today=REFERENCE_DAY, sleep=sleep)
    assert sleep.calls == []  # not retried: it would fail the same way


def test_a_private_ca_is_trusted_through_ca_file(tls_server, synthetic):
    server, ca = tls_server
    config = informat_config(server.url, ca_file=ca.ca_file)
    data = read_source(config, [operation("Subgroepen")], today=REFERENCE_DAY)
    assert len(data.answers["Subgroepen"]["030569"]) == len(
        expected_rows(synthetic, operation("Subgroepen"), "030569")
    )


@settings(max_examples=40, deadline=None)
@given(naam=XML_TEXT, opmerking=XML_TEXT, transport=st.sampled_from(TRANSPORTS))
def test_any_text_reaches_the_record_unchanged(naam, opmerking, transport):
    row = {
        "PPersoon": "1",
        "Relaties": [{"Naam": naam, "Opmerking": opmerking}, None],
        "_instelnr": "030569",
    }
    data = {"rows": {"Relaties": [row]}, "schooljaar": "2025-26"}
    with InformatServer(data, today=REFERENCE_DAY) as server:
        config = informat_config(server.url, transport=transport, instelnrs=["030569"])
        (record,) = read_source(config, [operation("Relaties")], today=REFERENCE_DAY).records(
            "Relaties"
        )
    # Only a value of nothing but whitespace is no value, like an empty element.
    relatie = {
        name: text for name, text in (("Naam", naam), ("Opmerking", opmerking)) if text.strip()
    }
    assert record == {"PPersoon": "1", "Relaties": [relatie]}
