"""Work run in a thread of its own while the caller does something else, with the caller's
context variables, and its outcome handed back as if the caller had run it."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class InBackground(Generic[T]):
    """*work* run in a thread of its own, started at once; :meth:`result` waits for it and
    returns what it returned or raises what it raised, unchanged (the same exception object, so
    the CLI reports it with the same message and exit code as when it ran in the caller)."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        # The caller's context variables (a log context, a render budget) go along.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run, work), name=name)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._value = work()
        except BaseException as exc:  # handed to the caller, which decides what it means
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self) -> T:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
