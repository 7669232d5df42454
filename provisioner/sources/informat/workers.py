"""Answers parsed in worker processes while the client's threads download.

Parsing XML is CPU work: four threads parsing at once in one process share one interpreter lock
and slow each other down (a 50,000-pupil read: 9.8 s with four threads, 5.5 s with one, 3.7 s of
it parsing), while a second core stays idle. So each download streams its bytes over a socket to
a process of its own, which runs the same :class:`AnswerParser` and sends back the records, or the
first error as soon as it is found (the download then stops, as before).

Each worker is a :class:`~provisioner.helper.Helper` (``python -m
provisioner.sources.informat.workers``, ~0.1 s to start, ~27 MB).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import threading
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from provisioner.errors import SourceError
from provisioner.helper import AVAILABLE, Helper, helper_connection
from provisioner.sources.informat.operations import Operation
from provisioner.sources.informat.parser import AnswerParser, UnreadableValue

_END = b""  # the end of one answer's bytes (httpx yields no empty chunk; the feeder skips them)
_CLOSED = "the Informat reader was closed while reading"
NICENESS = 10
"""How much lower a worker's priority is than the reader's."""


class ParseWorkers:
    """Up to *count* worker processes, each parsing one answer at a time; started as needed."""

    def __init__(self, count: int) -> None:
        self._idle: queue.LifoQueue[Helper] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max(1, count))
        self._all: list[Helper] = []
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> ParseWorkers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def parser(self, op: Operation, what: str, **options: Any) -> RemoteParser | LocalParser:
        """A parser for one answer, like :class:`AnswerParser`; use it in a ``with`` block. In
        this process where no helper can be started (Windows)."""
        if not AVAILABLE:
            return LocalParser(AnswerParser(op, what, **options))
        return RemoteParser(self, op, what, options)

    def _take(self) -> Helper:
        self._slots.acquire()
        try:
            if self._closed:
                raise SourceError(_CLOSED)
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                worker = Helper(__name__)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            if not self._closed:  # closed while it started: close() never saw it
                self._all.append(worker)
                return worker
        worker.stop()
        self._slots.release()
        raise SourceError(_CLOSED)

    def _give_back(self, worker: Helper, *, usable: bool) -> None:
        if usable:
            self._idle.put(worker)
        else:
            with self._lock:
                self._all.remove(worker)
            worker.stop()
        self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
        for worker in workers:  # all told first: they end at the same time
            worker.connection.close()
        for worker in workers:
            worker.stop()


class RemoteParser:
    """Feeds one answer's bytes to a worker; :meth:`close` returns the records.

    An error the worker found is raised by the next :meth:`feed` or by :meth:`close`. A worker
    left in the middle of an answer (an error, a broken download) is stopped, not reused."""

    def __init__(self, workers: ParseWorkers, op: Operation, what: str, options: Any) -> None:
        self._workers = workers
        self._request = (op, what, options)
        self._worker: Helper | None = None
        self._clean = False

    def __enter__(self) -> RemoteParser:
        self._worker = self._workers._take()
        self._worker.connection.send(self._request)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        _error: BaseException | None,
        _trace: TracebackType | None,
    ) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            self._workers._give_back(worker, usable=self._clean and kind is None)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        connection = self._connection()
        try:
            connection.send_bytes(chunk)
        except OSError:
            self._raise_reply()  # the worker stopped on an error: say it
        if connection.poll():
            self._raise_reply()

    def close(self) -> tuple[list[dict[str, Any]], frozenset[str], list[UnreadableValue]]:
        connection = self._connection()
        with contextlib.suppress(OSError):  # a worker that stopped has its error waiting
            connection.send_bytes(_END)
        records, seen, problems = self._reply()
        self._clean = True
        return records, seen, problems

    def _connection(self) -> Connection:
        assert self._worker is not None, "use the parser in a with block"
        return self._worker.connection

    def _reply(self) -> tuple[list[dict[str, Any]], frozenset[str], list[UnreadableValue]]:
        try:
            kind, *payload = self._connection().recv()
        except (EOFError, OSError):
            raise SourceError(
                f"{self._request[1]}: the process parsing the answer stopped unexpectedly "
                "(out of memory?); nothing was read from this answer"
            ) from None
        if kind == "error":
            raise payload[0]
        records, seen, problems = payload
        return records, seen, problems

    def _raise_reply(self) -> None:
        self._reply()
        raise AssertionError("a worker replied before the end of its answer without an error")


class LocalParser:
    """:class:`RemoteParser`'s interface over an :class:`AnswerParser` in this process."""

    def __init__(self, parser: AnswerParser) -> None:
        self._parser = parser

    def __enter__(self) -> LocalParser:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def feed(self, chunk: bytes) -> None:
        self._parser.feed(chunk)

    def close(self) -> tuple[list[dict[str, Any]], frozenset[str], list[UnreadableValue]]:
        records = self._parser.close()
        return records, self._parser.fields_seen, self._parser.problems


def _serve(connection: Connection) -> None:
    """A worker's loop: one answer after the other, until the reader closes the socket (also in
    the middle of an answer: its download failed) or the worker finds an error, which it sends."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            op, what, options = connection.recv()
            parser = LocalParser(AnswerParser(op, what, **options))
            try:
                while chunk := connection.recv_bytes():
                    parser.feed(chunk)
                records, seen, problems = parser.close()
            except (EOFError, OSError):
                raise
            except Exception as error:
                _send_error(connection, what, error)
                return
            connection.send(("done", records, seen, problems))


def _send_error(connection: Connection, what: str, error: Exception) -> None:
    try:
        connection.send(("error", error))
    except (pickle.PicklingError, TypeError, AttributeError):  # its message still pickles
        connection.send(("error", SourceError(f"{what}: {error}")))


if __name__ == "__main__":
    # Parsing is throughput work: the directory's read beside it, the night's longest step,
    # comes first when they share a core.
    os.nice(NICENESS)
    _serve(helper_connection())
