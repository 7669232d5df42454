"""``$batch``: the requests of concurrently running changes, packed 20 to a round trip.

Writes go as hand-built JSON ``$batch`` requests (the SDK's batch helpers send absolute item
URLs, lose ``dependsOn`` and drop response bodies) through the SDK's adapter. Each change is a
small coroutine that asks the :class:`Batcher` for its requests; the batcher packs whatever is
waiting into batches of up to 20, paced under the write quota, and sends throttled items again
by the run's one retry policy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.targets.base import TargetError
from provisioner.targets.entra.pacing import RETRIED
from provisioner.targets.entra.transport import Graph, Reply

MAX_BATCH = 20
"""Items in one ``$batch``; also the most ``members@odata.bind`` references in one request."""


@dataclass
class _Call:
    method: str
    url: str
    body: Any
    future: asyncio.Future[Reply]
    attempts: int = 0
    headers: Mapping[str, str] | None = None

    @property
    def writes(self) -> int:
        return 0 if self.method == "GET" else 1


class Batcher:
    """Collects the requests of concurrently running change coroutines and sends them as
    ``$batch`` requests of up to 20, one batch at a time (the write quota, not the round trip,
    is what limits a run). Throttled items go back to the front of the queue."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._queue: deque[_Call] = deque()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Batcher:
        self._runner = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner

    async def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Queue one request (``url`` relative to the version root, with its own *headers*, such
        as ``ConsistencyLevel``) and wait for its answer."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(method, url, body, future, headers=headers))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            # Let every ready coroutine queue its request before a batch is cut.
            for _ in range(3):
                await asyncio.sleep(0)
            if not self._queue:
                self._wake.clear()
                continue
            calls = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            try:
                await self._send(calls)
            except Exception as exc:  # the whole batch failed: every caller learns why
                for call in calls:
                    if not call.future.done():
                        call.future.set_exception(exc)

    async def _send(self, calls: list[_Call]) -> None:
        graph = self.graph
        policy = graph.policy
        await graph.pacer.take(sum(c.writes for c in calls))
        requests = []
        for index, call in enumerate(calls):
            item: dict[str, Any] = {"id": str(index + 1), "method": call.method, "url": call.url}
            headers = dict(call.headers or {})
            if call.body is not None:
                item["body"] = call.body
                headers["Content-Type"] = "application/json"
            if headers:
                item["headers"] = headers
            requests.append(item)
        lost = graph.resent_after_loss
        answer = await graph.send_json("POST", f"{graph.base_url}/$batch", {"requests": requests})
        resent = graph.resent_after_loss > lost
        stats = graph.stats
        stats.batches += 1
        stats.items += len(calls)
        stats.writes += sum(c.writes for c in calls)
        replies = {str(r.get("id")): r for r in (answer or {}).get("responses") or []}
        again: list[_Call] = []
        wait = 0.0
        for index, call in enumerate(calls):
            raw = replies.get(str(index + 1))
            if raw is None:
                call.future.set_exception(TargetError(f"$batch answered no item {index + 1}"))
                continue
            reply = Reply(int(raw.get("status", 0)), raw.get("headers") or {}, _body(raw), resent)
            call.attempts += 1
            if reply.status in RETRIED and not policy.gives_up(call.attempts):
                stats.throttled += 1
                wait = max(wait, policy.delay(call.attempts, reply.headers))
                again.append(call)
            else:
                call.future.set_result(reply)
        if again:
            self._queue.extendleft(reversed(again))
            await policy.pause(wait, retries=len(again))


def _body(raw: dict[str, Any]) -> Any:
    """An item's body: JSON, or (for some content types) base64 of it."""
    body = raw.get("body")
    if isinstance(body, str):
        try:
            return json.loads(base64.b64decode(body))
        except ValueError:
            return body
    return body
