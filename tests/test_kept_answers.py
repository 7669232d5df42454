"""Answers parsed on the last read are reused only for the very same bytes, and give exactly
what parsing them gives (the real client against the project's Informat server)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner import pipeline
from provisioner.errors import SourceError
from provisioner.sources.base import KeptAnswers
from provisioner.sources.informat import kept as kept_module
from provisioner.sources.informat.kept import BLOCK, KeptAnswer, Prefixes, decode, encode
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.sources.informat.reader import SourceData, read_source
from provisioner.sources.informat.workers import ParseWorkers
from provisioner.state import StateStore
from tests.conftest import INSTELNRS, REFERENCE_DAY, SCHOOLJAAR, informat_config
from tests.fakes.informat_server import InformatServer
from tests.fakes.synthetic import generate

ALL = list(OPERATIONS.values())
LLN = [operation("Lln")]


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What was handed to a parser (``Lln 030569``), in order."""
    seen: list[str] = []
    real = ParseWorkers.parser

    def parser(self: ParseWorkers, op, what: str, **options):
        seen.append(what.removeprefix("Informat ").replace(" for ", " "))
        return real(self, op, what, **options)

    monkeypatch.setattr(ParseWorkers, "parser", parser)
    return seen


@pytest.fixture
def own_server() -> Iterator[InformatServer]:
    """A server of this module's own, whose data the tests change; its Lln answers are a few
    megabytes, so that a change can lie beyond the first megabyte."""
    data = generate(4000, instelnrs=INSTELNRS, schooljaar=SCHOOLJAAR, seed=3)
    with InformatServer(data, today=REFERENCE_DAY) as server:
        yield server


def read(server: InformatServer, kept: KeptAnswers | None = None, ops=ALL, **fields) -> SourceData:
    return read_source(
        informat_config(server.url), ops, today=REFERENCE_DAY, kept=kept, fields=fields or None
    )


def same_read(one: SourceData, other: SourceData) -> None:
    assert one.answers == other.answers
    assert one.hashes == other.hashes
    assert one.fields_seen == other.fields_seen
    assert one.unreadable == other.unreadable


def test_unchanged_answers_are_not_parsed_again_and_read_exactly_as_parsed(server, parsed):
    first = KeptAnswers()
    fresh = read(server, first)
    assert len(first.new) == len(ALL) * len(INSTELNRS)
    assert len(parsed) == len(ALL) * len(INSTELNRS)
    parsed.clear()

    second = KeptAnswers(first.new)
    again = read(server, second)
    assert parsed == []  # not one answer parsed: every one came back the same
    same_read(again, fresh)
    assert second.new == first.new  # kept as they were, not encoded again


def test_a_changed_answer_is_parsed_and_only_that_one(own_server, parsed):
    first = KeptAnswers()
    read(own_server, first, LLN)
    pupils = [r for r in own_server.rows["Lln"] if r["_instelnr"] == "030569"]
    parsed.clear()
    for pupil in (pupils[-1], pupils[0]):  # beyond the first megabyte, then in it
        name = f"{pupil['Naam']}-Verhuisd"
        where = {"p_persoon": pupil["p_persoon"], "_instelnr": "030569"}
        assert own_server.rewrite("Lln", where, {"Naam": name}) == 1
        kept = KeptAnswers(first.new)
        parsed.clear()
        got = read(own_server, kept, LLN)
        assert parsed == ["Lln 030569"]
        same_read(got, read(own_server, None, LLN))
        assert [r.get("Naam") for r in got.answers["Lln"]["030569"]].count(name) == 1
        unchanged = [key for key in first.new if "|030577|" in key]
        assert [kept.new[key] for key in unchanged] == [first.new[key] for key in unchanged]


def test_a_change_beyond_the_first_megabyte_is_seen_there_not_at_the_end(own_server, tmp_path):
    """The held bytes go to the parser at the first megabyte that differs: the rest of the
    answer streams to it as it is downloaded."""
    first = KeptAnswers()
    read_source(
        informat_config(own_server.url), LLN, today=REFERENCE_DAY, kept=first, save=tmp_path / "s"
    )
    last = decode(next(blob for key, blob in first.new.items() if "|030569|" in key))
    assert last is not None and len(last.prefixes) >= 2, "the answer must span two megabytes"
    body = (tmp_path / "s" / "Lln" / "030569.xml").read_bytes()
    changed = body[: BLOCK + 10] + b"X" + body[BLOCK + 11 :]
    read_so_far = Prefixes()
    agreed = []
    for start in range(0, len(changed), 64 * 1024):
        read_so_far.update(changed[start : start + 64 * 1024])
        agreed.append(last.agrees(read_so_far))
    assert agreed.index(False) == 2 * BLOCK // (64 * 1024) - 1  # at the end of megabyte two
    assert not last.same(read_so_far)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("truncated_xml", "malformed or truncated XML"),
        ("malformed", "malformed or truncated XML"),
        ("empty_body", "the answer is empty"),
        ("html", "HTML page"),
    ],
)
def test_a_bad_answer_is_the_same_error_with_a_kept_answer(server, fault, message):
    first = KeptAnswers()
    read(server, first, LLN)
    server.inject(fault, op="Lln", instelnr="030577")
    with pytest.raises(SourceError, match=f"Lln for 030577: .*{message}"):
        read(server, KeptAnswers(first.new), LLN)


def test_an_answer_cut_short_is_retried_and_then_reused(server, parsed):
    first = KeptAnswers()
    fresh = read(server, first, LLN)
    server.inject("truncated", op="Lln", instelnr="030577", times=1)
    parsed.clear()
    config = informat_config(server.url)
    again = read_source(
        config, LLN, today=REFERENCE_DAY, kept=KeptAnswers(first.new), sleep=lambda _s: None
    )
    assert parsed == []  # the half that came first agreed, was held, and was never parsed
    same_read(again, fresh)


def test_a_kept_answer_that_cannot_be_read_or_was_read_with_other_fields_is_not_used(
    server, parsed
):
    first = KeptAnswers()
    fresh = read(server, first, LLN, Lln=["Naam"])
    spoilt = {key: blob[:-5] for key, blob in first.new.items()}
    parsed.clear()
    same_read(read(server, KeptAnswers(spoilt), LLN, Lln=["Naam"]), fresh)
    assert len(parsed) == len(INSTELNRS)
    parsed.clear()
    wider = read(server, KeptAnswers(first.new), LLN, Lln=["Naam", "Voornaam"])
    assert len(parsed) == len(INSTELNRS)  # kept under other fields: parsed
    assert {"Voornaam"} <= {f for r in wider.records("Lln") for f in r}


def test_another_parser_never_reuses_what_this_one_kept(server, parsed, monkeypatch):
    first = KeptAnswers()
    read(server, first, LLN)
    monkeypatch.setattr(kept_module, "_PARSER_CODE", "another-version")
    parsed.clear()
    read(server, KeptAnswers(first.new), LLN)
    assert len(parsed) == len(INSTELNRS)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 3 * BLOCK + 5),
    cuts=st.lists(st.integers(1, 2 * BLOCK), min_size=1, max_size=6),
    flip=st.integers(0, 3 * BLOCK + 4),
)
def test_prefixes_agree_until_the_first_megabyte_that_differs(size, cuts, flip):
    data = hashlib.shake_256(str(size).encode()).digest(size)
    whole = Prefixes()
    whole.update(data)
    assert whole.hexdigest() == hashlib.sha256(data).hexdigest()
    assert whole.hashes == [
        hashlib.sha256(data[:n]).hexdigest() for n in range(BLOCK, size + 1, BLOCK)
    ]
    last = KeptAnswer(whole.hexdigest(), size, whole.hashes, [], [], [])

    def chunks(body: bytes) -> Iterator[bytes]:
        start, turn = 0, 0
        while start < len(body):
            step = cuts[turn % len(cuts)]
            yield body[start : start + step]
            start, turn = start + step, turn + 1

    same = Prefixes()
    for chunk in chunks(data):
        same.update(chunk)
        assert last.agrees(same)
    assert last.same(same)
    if size:
        at = flip % size
        changed = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
        other = Prefixes()
        for chunk in chunks(changed):
            other.update(chunk)
            if other.size >= (at // BLOCK + 1) * BLOCK:
                assert not last.agrees(other)  # said by the end of the megabyte that differs
        assert not last.same(other)


def test_encoding_keeps_everything_a_parse_gives(server):
    first = KeptAnswers()
    data = read(server, first)
    for key, blob in first.new.items():
        kept = decode(blob)
        assert kept is not None
        op, nr = key.split("|")[3:5]
        answer = kept.answer()
        assert answer.records == data.answers[op][nr]
        assert encode(answer) == blob
    assert decode(b"not zlib") is None and decode(None) is None


# --- the pipeline: kept in the state store by the commands that write it --------------------------


def write_config(directory: Path, url: str) -> Path:
    path = directory / "provisioner.yaml"
    path.write_text(
        f"mappings: {Path(__file__).resolve().parent.parent / 'mappings'}\n"
        "state: state.db\n"
        "source:\n  informat:\n"
        f"    url: {url}\n"
        "    login: webservices@school.be\n"
        "    password: ${TEST_INFORMAT_PASSWORD}\n"
        f"    schooljaar: {SCHOOLJAAR}\n"
        f"    instelnrs: {list(INSTELNRS)}\n"
        "    referentiedatum: 15-01-2026\n"
    )
    return path


def test_the_answers_are_kept_by_apply_and_run_and_only_used_by_a_dry_run(
    server, parsed, tmp_path, monkeypatch
):
    from tests.conftest import PASSWORD

    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", PASSWORD)
    prepared = pipeline.prepare(write_config(tmp_path, server.url))
    assert prepared.config.state is not None
    fresh = pipeline.read_for_mappings(prepared)  # no state store yet: nothing kept
    assert not prepared.config.state.exists()
    with StateStore(prepared.config.state) as store:
        assert store.kept_answers() == {}

    dry_run = pipeline.read_for_mappings(prepared)  # plan: reads, keeps nothing
    with StateStore(prepared.config.state) as store:
        assert store.kept_answers() == {}
    writing = dataclasses.replace(prepared, keeps_read=True)
    pipeline.read_for_mappings(writing)
    with StateStore(prepared.config.state) as store:
        kept = store.kept_answers()
    assert len(kept) == len(prepared.fields) * len(INSTELNRS)

    parsed.clear()
    again = pipeline.read_for_mappings(prepared)  # a dry run uses them
    assert parsed == []
    for other in (dry_run, again):
        assert other.rows == fresh.rows and other.digest == fresh.digest
        assert other.problems == fresh.problems and other.blocks == fresh.blocks

    # A night whose answers all came back the same writes nothing (the rows stay as they were).
    def rows() -> list[tuple[int, str]]:
        with StateStore(prepared.config.state) as store:
            return list(store.db.execute("SELECT rowid, key FROM kept_answers ORDER BY key"))

    before = rows()
    pipeline.read_for_mappings(writing)
    assert rows() == before
    server.rewrite("Lln", {"_instelnr": INSTELNRS[0]}, {"stamnr": "999"})  # the session's server
    try:
        pipeline.read_for_mappings(writing)
    finally:
        server.restore_rows()
    assert rows() != before and {key for _, key in rows()} == {key for _, key in before}

    with StateStore(prepared.config.state) as store:
        store.forget_reads()
        assert store.kept_answers() == {}


def test_a_source_of_several_parts_lets_each_part_that_can_reuse_what_it_kept(
    server, parsed, tmp_path
):
    """Informat beside a part that cannot keep answers (a people file: read as always)."""
    from provisioner.sources.composite import CompositeSource
    from provisioner.sources.informat.source import InformatSource
    from tests.test_architecture import PEOPLE, PeopleFileSettings, PeopleFileSource

    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    people = PeopleFileSource(PeopleFileSettings(tmp_path / "people.csv"))
    assert not hasattr(people, "read_keeping")
    informat = InformatSource(informat_config(server.url), today=REFERENCE_DAY)
    fields = {"Lln": ["Naam"], "Personen": None}
    both = CompositeSource([("informat", informat), ("people", people)])
    first = KeptAnswers()
    fresh = both.read_keeping(fields, first)
    assert len(first.new) == len(INSTELNRS)  # Informat's answers; the file keeps nothing
    parsed.clear()
    again = both.read_keeping(fields, KeptAnswers(first.new))
    assert parsed == []
    assert again.rows == fresh.rows and again.digest == fresh.digest
    assert [r["naam"] for _s, r in again.rows.datasets["Personen"].rows] == ["Peeters", "Claes"]
