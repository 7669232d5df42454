import datetime as dt

import pytest

from provisioner.errors import ConfigError
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.sources.informat.params import (
    QueryOptions,
    check_schooljaar,
    normalise_instelnr,
    parse_day,
    resolve_schooljaar,
    wire_parameters,
)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2025, 8, 31), "2024-25"),
        (dt.date(2025, 9, 1), "2025-26"),
        (dt.date(2026, 1, 15), "2025-26"),
        (dt.date(2099, 12, 31), "2099-00"),
    ],
)
def test_auto_schooljaar_switches_on_1_september(today, expected):
    assert resolve_schooljaar("auto", today) == expected


def test_explicit_schooljaar_wins_over_auto():
    assert resolve_schooljaar("2023-24", dt.date(2026, 1, 1)) == "2023-24"


@pytest.mark.parametrize("bad", ["2025-27", "2025/26", "25-26", "2025-2026", ""])
def test_schooljaar_is_validated(bad):
    with pytest.raises(ValueError, match="schooljaar"):
        check_schooljaar(bad)


@pytest.mark.parametrize(
    ("raw", "six"), [("30569", "030569"), ("030569", "030569"), (" 1 ", "000001")]
)
def test_instelnr_is_six_digits(raw, six):
    assert normalise_instelnr(raw) == six


@pytest.mark.parametrize("bad", ["1234567", "03O569", "", "30-569"])
def test_bad_instelnr_is_refused(bad):
    with pytest.raises(ValueError):
        normalise_instelnr(bad)


@pytest.mark.parametrize(
    "text", ["15-01-2025", "15/01/2025", "15.01.2025", "2025-01-15", "15-1-2025"]
)
def test_reference_dates_accept_three_separators(text):
    assert parse_day(text) == dt.date(2025, 1, 15)


@pytest.mark.parametrize("bad", ["31-02-2025", "15-01-25", "15-01/2025", "morgen"])
def test_bad_reference_dates_are_errors(bad):
    with pytest.raises(ValueError):
        parse_day(bad)


def test_query_options_resolve_to_wire_formats():
    options = QueryOptions.resolve(
        dt.date(2025, 3, 4),
        schooljaar="auto",
        referentiedatum="today",
        gewijzigd_sinds="01/02/2024",
    )
    assert options.schooljaar == "2024-25"
    assert options.referentiedatum == "04-03-2025"  # zero-padded dd-mm-yyyy
    assert options.gewijzigd_sinds == "1-2-2024"  # d-m-yyyy, as the public clients send it


def test_every_declared_parameter_is_sent_in_wire_order_and_casing():
    options = QueryOptions(login="u", password="p", schooljaar="2025-26")
    params = wire_parameters(operation("SmartschoolUsers"), options, "030569")
    assert params == [
        ("login", "u"),
        ("paswoord", "p"),
        ("smartschoolplatform", ""),
        ("schooljaar", "2025-26"),
        ("instelnr", "030569"),
        ("discimusVestigingsnr", ""),
        ("referentiedatum", ""),
    ]
    names = [n for n, _ in wire_parameters(operation("Leerkrachten"), options, "030569")]
    assert names[-1] == "personeelsgroep_is_een_optie"


def test_every_operation_starts_with_the_common_parameters():
    for op in OPERATIONS.values():
        assert {"login", "paswoord", "schooljaar", "instelnr"} <= set(op.params), op.name
        wire_parameters(op, QueryOptions(), "030569")  # every parameter has a source


def test_operation_names_are_case_sensitive_with_a_hint():
    assert operation("LeerkrachtenVrijevelden").item == "wsPersoneelVrijVeld"
    with pytest.raises(ConfigError, match="did you mean LeerkrachtenVrijevelden"):
        operation("LeerkrachtenVrijeVelden")
    with pytest.raises(ConfigError, match="unknown Informat data set 'Leerlingen'"):
        operation("Leerlingen")
