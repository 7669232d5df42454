"""Answers parsed in worker processes read exactly as in this process, and fail as clearly.

The workers are real processes (the reader's own); the answers are the parser tests' hand-written
ones and the Informat server's (over HTTP in test_reader.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import SourceError
from provisioner.sources.informat import workers as worker_module
from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.parser import AnswerParser, parse_answer
from provisioner.sources.informat.workers import NICENESS, ParseWorkers
from tests.test_parser import NS, lln

ANSWER = lln(
    "<p_persoon> 1</p_persoon><Naam>Peeters</Naam><geboortedatum>2011-03-07T00:00:00</geboortedatum>",
    "<p_persoon>2</p_persoon><Naam>Ünal</Naam><geboortedatum>30/02/2011</geboortedatum>",
    "<Naam>zonder sleutel</Naam>",
    "<p_persoon>4</p_persoon><Naam>Janssens</Naam><Klasnr xsi:nil='true' /><Voornaam>An</Voornaam>",
).encode()


@pytest.fixture
def workers() -> Iterator[ParseWorkers]:
    pool = ParseWorkers(2)
    yield pool
    pool.close()


def remote(workers: ParseWorkers, chunks: list[bytes], **options: object) -> tuple:
    with workers.parser(operation("Lln"), "test Lln", **options) as parser:
        for chunk in chunks:
            parser.feed(chunk)
        return parser.close()


def in_process(chunks: list[bytes], **options: object) -> tuple:
    parser = AnswerParser(operation("Lln"), "test Lln", **options)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.close(), parser.fields_seen, parser.problems


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("fields", [None, ["Naam", "geboortedatum"]])
def test_a_worker_reads_what_this_process_reads_problems_and_fields_seen_included(workers, fields):
    expected = in_process(pieces(ANSWER, 7), fields=fields)
    assert remote(workers, pieces(ANSWER, 7), fields=fields) == expected
    records, seen, problems = expected
    assert [r.get("p_persoon") for r in records] == ["1", "2", None, "4"]
    assert "Voornaam" in seen and len(problems) == 2  # the date of 2 and the keyless record


@pytest.mark.parametrize("fields", [None, ["Naam", "geboortedatum"]])
def test_without_helpers_windows_an_answer_is_read_here_as_a_worker_reads_it(
    workers, fields, monkeypatch
):
    monkeypatch.setattr(worker_module, "AVAILABLE", False)
    assert remote(workers, pieces(ANSWER, 7), fields=fields) == in_process(
        pieces(ANSWER, 7), fields=fields
    )
    assert workers._all == []  # no process was started
    with pytest.raises(SourceError, match="Lln"), workers.parser(operation("Lln"), "Lln") as parser:
        parser.feed(b"<not the answer/>")
        parser.close()


def test_one_worker_reads_answer_after_answer_and_ends_with_the_reader():
    workers = ParseWorkers(1)
    try:
        for _ in range(3):
            records, _seen, _problems = remote(workers, pieces(ANSWER, 100))
            assert len(records) == 4
        (worker,) = workers._all
        assert worker.process.poll() is None  # one process served all three
    finally:
        workers.close()
    assert worker.process.poll() is not None


def test_an_error_in_the_middle_stops_the_download_early_with_the_parsers_message(workers):
    def junk() -> Iterator[bytes]:
        yield f'<?xml version="1.0"?><ArrayOfWsInschrijving {NS}>'.encode()
        while True:  # endless: only the worker's early refusal ends this test
            yield b"<wsReclame><Tekst>koop nu</Tekst></wsReclame>" * 1000

    sent = 0
    with (
        pytest.raises(SourceError, match=r"held no complete <wsInschrijving> record"),
        workers.parser(operation("Lln"), "test Lln") as parser,
    ):
        for chunk in junk():
            sent += len(chunk)
            parser.feed(chunk)
    assert sent < 4 * 1024 * 1024
    # That worker stopped; the next answer gets another one and is read in full.
    assert len(remote(workers, [ANSWER])[0]) == 4


def test_the_same_errors_as_in_this_process(workers):
    bad = ANSWER.replace(b"</Naam>", b"</Nam>", 1)
    with pytest.raises(SourceError) as here:
        parse_answer([bad], operation("Lln"), "test Lln")
    with pytest.raises(SourceError) as there:
        remote(workers, [bad])
    assert str(there.value) == str(here.value)


def test_a_worker_that_dies_is_a_clear_error_and_the_next_answer_is_read(workers):
    with (
        pytest.raises(SourceError, match="the process parsing the answer stopped unexpectedly"),
        workers.parser(operation("Lln"), "test Lln") as parser,
    ):
        parser.feed(ANSWER[:200])
        (worker,) = workers._all
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        parser.feed(ANSWER[200:])
        parser.close()
    assert len(remote(workers, [ANSWER])[0]) == 4


def test_a_download_that_fails_midway_frees_its_worker(workers):
    class Broken(Exception):
        pass

    with pytest.raises(Broken), workers.parser(operation("Lln"), "test Lln") as parser:
        parser.feed(ANSWER[:200])
        (stopped,) = workers._all
        raise Broken
    assert stopped.process.poll() is not None  # it was left midway: stopped, not reused
    assert workers._all == []
    assert len(remote(workers, [ANSWER])[0]) == 4


def test_a_worker_gets_no_secret_from_the_environment(workers, monkeypatch):
    monkeypatch.setenv("INFORMAT_PASSWORD", "geheim-wachtwoord")
    remote(workers, [ANSWER])  # answered: the worker runs its own program, not a fork of this
    (worker,) = workers._all
    environment = Path(f"/proc/{worker.process.pid}/environ").read_bytes()
    assert b"geheim-wachtwoord" not in environment
    assert b"PYTHONPATH=" in environment


def test_a_worker_gives_way_to_the_reader_when_they_share_a_core(workers):
    remote(workers, [ANSWER])
    (worker,) = workers._all
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == min(19, ours + NICENESS)
