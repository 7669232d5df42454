"""The parser on hand-written answers: each quirk of the wire format, one test each.

End-to-end behaviour over HTTP is tested against the local Informat server in test_reader.py.
"""

import pytest

from provisioner.errors import AuthenticationError, SourceError
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.sources.informat.parser import (
    AnswerParser,
    UnreadableValue,
    normalise_date,
    parse_answer,
)

NS = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://InformatSoftware.be/wsInfSoft/wsInformat"'


def parse(xml: str | bytes, op="Lln", **kw):
    data = xml.encode() if isinstance(xml, str) else xml
    # Feed in small pieces: the parser must not depend on how the network cuts the bytes.
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    return parse_answer(chunks, operation(op), f"test {op}", **kw)


def lln(*items: str) -> str:
    body = "".join(f"<wsInschrijving>{i}</wsInschrijving>" for i in items)
    return f'<?xml version="1.0" encoding="utf-8"?><ArrayOfWsInschrijving {NS}>{body}</ArrayOfWsInschrijving>'


def parse_with_problems(xml: str, op="Lln", **kw) -> tuple[list[dict], list[UnreadableValue]]:
    parser = AnswerParser(operation(op), f"test {op}", **kw)
    data = xml.encode()
    for i in range(0, len(data), 7):
        parser.feed(data[i : i + 7])
    return parser.close(), parser.problems


def test_the_forms_of_no_value_are_the_same():
    records = parse(
        lln(
            "<p_persoon>1</p_persoon><Klasnr />",
            "<p_persoon>2</p_persoon>",
            '<p_persoon>3</p_persoon><Klasnr xsi:nil="true" />',
            "<p_persoon>4</p_persoon><Klasnr>7</Klasnr>",
            "<p_persoon>5</p_persoon><Klasnr> \t\n </Klasnr><geboortedatum>  </geboortedatum>",
        )
    )
    assert [r.get("Klasnr") for r in records] == [None, None, None, "7", None]
    assert records[0] == {"p_persoon": "1"}
    assert records[4] == {"p_persoon": "5"}


def test_empty_answer_is_an_empty_list_not_an_error():
    assert parse(f"<ArrayOfWsInschrijving {NS} />") == []


def test_field_names_and_utf8_values_are_kept_exactly():
    (record,) = parse(
        lln(
            "<p_persoon>1</p_persoon><Naam>Çelik</Naam><Voornaam>Zoë</Voornaam><Stamnr_kort>12</Stamnr_kort>"
        )
    )
    assert record == {"p_persoon": "1", "Naam": "Çelik", "Voornaam": "Zoë", "Stamnr_kort": "12"}


def test_lln_dates_are_yyyy_mm_dd_and_instelnr_gets_six_digits():
    (record,) = parse(
        lln(
            "<p_persoon>1</p_persoon><geboortedatum>2012-03-07</geboortedatum><instelnr>30569</instelnr>"
        )
    )
    assert record["geboortedatum"] == "2012-03-07"
    assert record["instelnr"] == "030569"


def test_leerkrachten_dates_are_dd_mm_yyyy():
    xml = f"<ArrayOfWsPersoneelslid {NS}><wsPersoneelslid><p_persoon>9</p_persoon><Geboortedatum>07.03.1980</Geboortedatum></wsPersoneelslid></ArrayOfWsPersoneelslid>"
    assert parse(xml, "Leerkrachten")[0]["Geboortedatum"] == "1980-03-07"


def test_a_date_in_another_operations_documented_form_is_read_all_the_same():
    xml = f"<ArrayOfWsPersoneelslid {NS}><wsPersoneelslid><p_persoon>9</p_persoon><Geboortedatum>1980-03-07</Geboortedatum></wsPersoneelslid></ArrayOfWsPersoneelslid>"
    records, problems = parse_with_problems(xml, "Leerkrachten")
    assert records == [{"p_persoon": "9", "Geboortedatum": "1980-03-07"}]
    assert problems == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-09-01T00:00:00", "2023-09-01"),
        ("2023-09-01T08:30:00+02:00", "2023-09-01T08:30:00"),  # the date as written, not UTC
        ("2023-09-01T00:00:00+02:00", "2023-09-01"),
        ("2023-09-01T00:00:00.000", "2023-09-01"),
        ("2023-09-01T00:00:00.1234567Z", "2023-09-01"),
        ("2023-09-01T00:00:00Z", "2023-09-01"),
        ("2023-09-01 07:05", "2023-09-01T07:05:00"),
        ("2023-9-1", "2023-09-01"),
        ("0001-01-01T00:00:00", None),  # .NET's DateTime.MinValue: no date
        ("0001-01-01", None),
        ("01.01.0001", None),
        ("07.03.1980", "1980-03-07"),
        ("7.3.1980", "1980-03-07"),
        ("07-03-1980", "1980-03-07"),
        ("07/03/1980", "1980-03-07"),
        ("01/02/2011", "2011-02-01"),  # day first: 1 February, never 2 January
        ("13/02/2011", "2011-02-13"),
        ("2012-03-07", "2012-03-07"),
        ("  2012-03-07\n", "2012-03-07"),
        ("   ", None),
    ],
)
def test_every_unambiguous_date_form_is_read(value, expected):
    assert normalise_date(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2011-02-31", "'2011-02-31' is not a date: month 2 of 2011 has no day 31"),
        ("31.31.2011", "'31.31.2011' is not a date: there is no month 31"),
        ("02/13/2011", "there is no month 13 (dates are read day first, never month first)"),
        ("2011-01-10T25:00:00", "the time 25:00:00 does not exist"),
        ("07.03-1980", "'07.03-1980' is not a date in a form Informat uses"),
        ("10.01.11", "'10.01.11' is not a date in a form Informat uses"),  # which century?
        ("Peeters", "a value of 7 characters (not shown) is not a date in a form"),
        ("٢٠١١-٠١-١٠", "(not shown) is not a date in a form"),  # Arabic-Indic digits
    ],
)
def test_values_that_are_no_date_are_refused_with_a_reason(value, reason):
    with pytest.raises(ValueError) as caught:
        normalise_date(value)
    assert reason in str(caught.value)
    assert "Peeters" not in str(caught.value)


def test_only_the_date_formats_the_reference_confirms_are_marked_verified():
    verified = {name for name, op in OPERATIONS.items() if op.dates_verified}
    assert verified == {"Lln", "Leerkrachten", "Inschrijvingen"}
    assert operation("Inschrijvingen").date_format == "datetime"
    assert operation("Inschrijvingen").verified is False  # its item element is still a guess
    assert operation("LlnExtra").date_format == operation("Subgroepen").date_format == "any"


def test_an_unreadable_date_empties_that_field_only_and_is_a_problem_of_its_person():
    records, problems = parse_with_problems(
        lln(
            "<p_persoon>1</p_persoon><Naam>Aerts</Naam><geboortedatum>2011-02-31</geboortedatum>",
            "<p_persoon>2</p_persoon><geboortedatum>2011-01-10</geboortedatum>",
        )
    )
    assert records == [
        {"p_persoon": "1", "Naam": "Aerts"},
        {"p_persoon": "2", "geboortedatum": "2011-01-10"},
    ]
    assert problems == [
        UnreadableValue(
            "1", "geboortedatum", "'2011-02-31' is not a date: month 2 of 2011 has no day 31"
        )
    ]


def test_a_field_that_is_not_kept_is_never_read_so_never_a_problem():
    records, problems = parse_with_problems(
        lln("<p_persoon>1</p_persoon><Naam>Aerts</Naam><geboortedatum>2011-02-31</geboortedatum>"),
        fields=["Naam"],
    )
    assert records == [{"p_persoon": "1", "Naam": "Aerts"}]
    assert problems == []


@pytest.mark.parametrize(
    "key", ["<p_persoon />", "<p_persoon>  </p_persoon>", "", '<p_persoon xsi:nil="true" />']
)
def test_a_record_without_a_key_is_kept_keyless_and_is_a_problem_of_nobody(key):
    records, problems = parse_with_problems(
        lln(
            "<p_persoon>1</p_persoon>",
            f"{key}<Naam>Aerts</Naam><geboortedatum>2011-02-31</geboortedatum>",
        )
    )
    assert records == [{"p_persoon": "1"}, {"Naam": "Aerts"}]
    assert len(problems) == 1  # the unreadable date of nobody's record adds nothing
    assert problems[0].key is None
    assert problems[0].field == "p_persoon"
    assert "record 2 of the answer has no person key" in problems[0].reason


def test_a_key_with_whitespace_around_is_the_same_key():
    records = parse(lln("<p_persoon> 123\n</p_persoon>"))
    assert records == [{"p_persoon": "123"}]


def test_an_unreadable_date_inside_a_per_person_container_names_the_container():
    xml = f"""<ArrayOfWsRelaties {NS}><WsRelaties><PPersoon>4</PPersoon><Relaties>
      <Relatie><Naam>X</Naam><Geboortedatum>30.02.1980</Geboortedatum></Relatie>
      <Relatie><Naam>Y</Naam><Geboortedatum>1980-02-03T00:00:00</Geboortedatum></Relatie>
    </Relaties></WsRelaties></ArrayOfWsRelaties>"""
    records, problems = parse_with_problems(xml, "Relaties")
    assert records[0]["Relaties"] == [
        {"Naam": "X"},
        {"Naam": "Y", "Geboortedatum": "1980-02-03"},
    ]
    assert [(p.key, p.field) for p in problems] == [("4", "Relaties.Geboortedatum")]


def test_nested_sets_are_lists_even_with_one_child_and_skip_nil_entries():
    xml = f"""<ArrayOfWsComnummers {NS}>
      <WsComnummers><PPersoon>1</PPersoon><Comnrs><Comnr><Nummer>0470</Nummer><Type>Eigen</Type></Comnr></Comnrs></WsComnummers>
      <WsComnummers><PPersoon>2</PPersoon><Comnrs><Comnr xsi:nil="true" /><Comnr><Nummer>0471</Nummer></Comnr></Comnrs></WsComnummers>
      <WsComnummers><PPersoon>3</PPersoon><Comnrs /></WsComnummers>
      <WsComnummers><PPersoon>4</PPersoon></WsComnummers>
    </ArrayOfWsComnummers>"""
    records = parse(xml, "ComnummersRelatie")
    assert records[0]["Comnrs"] == [{"Nummer": "0470", "Type": "Eigen"}]
    assert records[1]["Comnrs"] == [{"Nummer": "0471"}]
    assert records[2]["Comnrs"] == []
    assert "Comnrs" not in records[3]


def test_nested_dates_are_normalised_too():
    xml = f"<ArrayOfWsRelaties {NS}><WsRelaties><PPersoon>1</PPersoon><Relaties><Relatie><Type>Moeder</Type><Geboortedatum>1980-01-02T00:00:00</Geboortedatum></Relatie></Relaties></WsRelaties></ArrayOfWsRelaties>"
    assert parse(xml, "Relaties")[0]["Relaties"][0]["Geboortedatum"] == "1980-01-02"


def test_item_names_are_accepted_in_either_initial_case_and_without_namespace():
    xml = "<ArrayOfWsInschrijving><WsInschrijving><p_persoon>1</p_persoon></WsInschrijving></ArrayOfWsInschrijving>"
    assert parse(xml) == [{"p_persoon": "1"}]


def test_soap_answer_is_read_like_the_get_answer():
    xml = """<?xml version="1.0" encoding="utf-8"?>
    <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
      <soap:Body><LlnResponse xmlns="http://InformatSoftware.be/wsInfSoft/wsInformat"><LlnResult>
        <wsInschrijving><p_persoon>1</p_persoon><Klas /></wsInschrijving>
        <wsInschrijving><p_persoon>2</p_persoon></wsInschrijving>
      </LlnResult></LlnResponse></soap:Body></soap:Envelope>"""
    assert parse(xml) == [{"p_persoon": "1"}, {"p_persoon": "2"}]


def test_soap_fault_is_an_error_and_credentials_are_recognised():
    xml = """<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
      <faultcode>soap:Server</faultcode><faultstring>Server was unable to process request. ---&gt; Ongeldige login of paswoord.</faultstring>
      </soap:Fault></soap:Body></soap:Envelope>"""
    with pytest.raises(
        AuthenticationError, match="rejected the login: Ongeldige login of paswoord"
    ):
        parse(xml)


def test_fields_filter_keeps_only_what_is_asked_and_the_key():
    (record,) = parse(
        lln("<p_persoon>1</p_persoon><Naam>A</Naam><rijksregnr>99</rijksregnr>"), fields={"Naam"}
    )
    assert record == {"p_persoon": "1", "Naam": "A"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the answer is empty"),
        (b"   \r\n", "the answer is empty"),
        (
            b"<!DOCTYPE html><html><head><title>Aanmelden</title><meta charset=utf-8></head></html>",
            r"HTML page \(Aanmelden\)",
        ),
        (b"Missing parameter: login.", "not XML: 'Missing parameter: login.'"),
        (lln("<p_persoon>1</p_persoon>").encode()[:-30], "malformed or truncated XML"),
        (
            b"<ArrayOfWsInschrijving><wsInschrijving><p_persoon>1</wsInschrijving>",
            "malformed or truncated XML",
        ),
        (b"<boolean>true</boolean>", "answered <boolean>, expected <ArrayOfWsInschrijving>"),
        (
            f"<ArrayOfWsLeerling {NS} />".encode(),
            "answered <ArrayOfWsLeerling>, expected <ArrayOfWsInschrijving>",
        ),
    ],
)
def test_bad_answers_are_errors_never_zero_rows(body, message):
    with pytest.raises(SourceError, match=message):
        parse(body)


def test_an_answer_with_unexpected_items_is_an_error_that_says_what_to_correct():
    xml = f"<ArrayOfInschrijving {NS}><Inschrijving><PPersoon>1</PPersoon></Inschrijving></ArrayOfInschrijving>"
    with pytest.raises(
        SourceError,
        match=r"holds <Inschrijving> where <WsInschrijving> was expected; .*correct Inschrijvingen",
    ):
        parse(xml, "Inschrijvingen")


def test_unexpected_elements_between_items_are_not_lost():
    xml = lln("<p_persoon>1</p_persoon>").replace(
        "</wsInschrijving>", "</wsInschrijving><wsOther/>", 1
    )
    xml = xml.replace(
        "</ArrayOfWsInschrijving>",
        "<wsInschrijving><p_persoon>2</p_persoon></wsInschrijving></ArrayOfWsInschrijving>",
    )
    with pytest.raises(SourceError, match="<wsOther>"):
        parse(xml)


def test_external_entities_are_never_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xml = f"""<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>
    <ArrayOfWsInschrijving><wsInschrijving><p_persoon>1</p_persoon><Naam>&x;</Naam></wsInschrijving></ArrayOfWsInschrijving>"""
    try:
        records = parse(xml)
    except SourceError:
        return  # refusing the document is fine too
    assert "TOPSECRET" not in repr(records)


def test_a_doctype_is_an_error_never_fields_silently_empty():
    xml = lln("<p_persoon>1</p_persoon><Naam>&n;</Naam>").replace(
        "<ArrayOfWsInschrijving",
        '<!DOCTYPE ArrayOfWsInschrijving [<!ENTITY n "Peeters">]><ArrayOfWsInschrijving',
        1,
    )
    with pytest.raises(SourceError, match="answered with a DOCTYPE"):
        parse(xml)
    # An HTML error page (which starts with its own doctype) is still named as such.
    with pytest.raises(SourceError, match=r"answered an HTML page \(Aanmelden\)"):
        parse("<!DOCTYPE html><html><head><title>Aanmelden</title></head><body><p>x</body></html>")
    xhtml = (
        '\ufeff<?xml version="1.0"?><!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd"><html xmlns="http://www.w3.org/1999/'
        'xhtml"><head><title>Aanmelden</title></head><body><p>x</p></body></html>'
    )
    with pytest.raises(SourceError, match=r"answered an HTML page \(Aanmelden\)"):
        parse(xhtml)
    # A doctype that says html does not let entities into a data answer.
    disguised = lln("<p_persoon>1</p_persoon><Naam>&n;</Naam>").replace(
        "<ArrayOfWsInschrijving", '<!DOCTYPE html [<!ENTITY n "Peeters">]><ArrayOfWsInschrijving', 1
    )
    with pytest.raises(SourceError, match="answered with a DOCTYPE"):
        parse(disguised)


def _counted(chunks, seen: list[int]):
    for chunk in chunks:
        seen[0] += len(chunk)
        yield chunk


def test_an_answer_of_junk_elements_is_refused_after_a_few_megabytes_not_at_its_end():
    def junk():
        yield f'<?xml version="1.0"?><ArrayOfWsInschrijving {NS}>'.encode()
        while True:  # endless: only an early refusal ends this test
            yield b"<wsReclame><Tekst>koop nu</Tekst></wsReclame>" * 1000

    seen = [0]
    with pytest.raises(
        SourceError,
        match=r"held no complete <wsInschrijving> record \(it starts with <wsReclame>, <Tekst>\)",
    ):
        parse_answer(_counted(junk(), seen), operation("Lln"), "test Lln")
    assert seen[0] < 2 * 1024 * 1024


def test_junk_between_items_is_refused_at_the_next_item():
    def answer():
        yield f'<?xml version="1.0"?><ArrayOfWsInschrijving {NS}>'.encode()
        yield b"<wsInschrijving><p_persoon>1</p_persoon></wsInschrijving><wsReclame/>" + b" " * 600
        while True:
            yield b"<wsInschrijving><p_persoon>2</p_persoon></wsInschrijving>" * 100

    seen = [0]
    with pytest.raises(SourceError, match="holds <wsReclame> where <wsInschrijving> was expected"):
        parse_answer(_counted(answer(), seen), operation("Lln"), "test Lln")
    assert seen[0] < 100_000


def test_an_answer_larger_than_the_cap_is_refused():
    body = lln(*(f"<p_persoon>{n}</p_persoon>" for n in range(200)))
    assert len(parse(body, max_bytes=len(body))) == 200
    with pytest.raises(SourceError, match=r"larger than 0\.0\d+ MB.*max_answer_mb"):
        parse(body, max_bytes=len(body) - 1)


def test_junk_in_a_soap_answer_is_named_after_the_envelope():
    def junk():
        yield (
            b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            b'envelope/"><soap:Body><LlnResponse xmlns="http://InformatSoftware.be/wsInfSoft/'
            b'wsInformat"><LlnResult>'
        )
        while True:
            yield b"<wsReclame><Tekst>koop nu</Tekst></wsReclame>" * 1000

    with pytest.raises(SourceError, match=r"\(it starts with <wsReclame>, <Tekst>\); this is not"):
        parse_answer(junk(), operation("Lln"), "test Lln")
