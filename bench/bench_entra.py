"""Benchmark: the Entra ID target's $batch writes and bulk read against the local Graph server.

    python -m bench.bench_entra [--users 2000] [--read-users 50000] [--rounds 3]

The project's Graph server (``tests/fakes/graph_server.py``) runs in its own process on 127.0.0.1,
seeded with M users ``user{i}@school.example``, so its CPU does not compete for the GIL with the
client being measured. In one run:

- bulk read: ``EntraId.read`` (raw JSON pages of the managed users through msgraph-sdk's request
  adapter, then the groups and their members; none are seeded) against a bare ``httpx.Client``
  that GETs the same first URL with the same headers, follows ``@odata.nextLink`` and
  ``json.loads`` every page, keeping every user dict. Best of ``--rounds`` each; the user counts
  must match. Also the target's users paging alone (``graph.pages``), to show what the groups and
  the ObservedState cost on top of it;
- peak memory of this process (``ru_maxrss``) after the read rounds;
- writes: ``EntraId.apply_all`` of N account creations, counted by the target's own Stats: writes
  per HTTP round trip (a ``$batch`` carries up to 20), wall time and creates per second.

Every time is also given as this process's CPU time: the wall time includes the server's work,
which a real run does not pay on this machine.

Why: Graph's write quota (about 3,000 writes per 2.5 minutes) is what limits a real run, so every
round trip should carry a full batch; and a school's whole tenant is read before every plan, so
that read must not cost much more than fetching the JSON. Goals: ≥ 19 writes per round trip when
creating 2,000 users; the target's read ≤ 2 × the bare httpx paging.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from azure.core.credentials import AccessToken

from provisioner.plan.model import Change
from provisioner.secret import Secret
from provisioner.targets.entra import EntraId
from provisioner.targets.entra.snapshot import LIMITS, USER_READ
from provisioner.targets.entra_settings import EntraConfig

TOKEN = "test-token"
DOMAIN = "school.example"  # where the server's --seed-users puts its users
READ_ATTRIBUTES = ("displayName", "givenName", "surname", "department")
ROOT = Path(__file__).resolve().parent.parent


class StaticToken:
    """The server's bearer token, without a sign-in (the fake accepts exactly this token)."""

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(TOKEN, int(time.time()) + 3600)

    async def close(self) -> None:
        pass


def start_server(seed_users: int, *options: str) -> tuple[subprocess.Popen[str], str]:
    """The Graph server in a child process (with more command-line *options*); its first
    printed line is the base URL."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.graph_server",
            "--port",
            "0",
            "--seed-users",
            str(seed_users),
            "--token",
            TOKEN,
            *options,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    if not url.startswith("http://"):
        server.kill()
        raise SystemExit(f"the Graph server did not start (printed {url!r})")
    return server, url


def stop_server(server: subprocess.Popen[str]) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def config_for(graph_url: str) -> EntraConfig:
    # Built directly: the https-only check on graph_url runs when the YAML is loaded.
    return EntraConfig(
        tenant_id="school.onmicrosoft.com",
        client_id=str(uuid.UUID(int=1)),
        domains=[DOMAIN],
        client_secret=Secret("unused", "bench"),
        graph_url=graph_url,
    )


def users_url(config: EntraConfig) -> str:
    """The first URL of the target's user read (``read_snapshot``), character for character."""
    select = ",".join(sorted({*USER_READ, config.anchor_property, *LIMITS}))
    query = f"$filter=endswith(userPrincipalName,'@{DOMAIN}')&$count=true"
    return f"{config.graph_url}/users?{query}&$select={select}&$top=999"


def raw_paging(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    """The baseline: GET, json.loads, follow @odata.nextLink, keep every user dict."""
    users: list[dict[str, Any]] = []
    link: str | None = url
    while link:
        response = client.get(link)
        response.raise_for_status()
        page = json.loads(response.content)
        users += page["value"]
        link = page.get("@odata.nextLink")
    return users


def best(rounds: int, run: Callable[[], int]) -> tuple[float, float, int]:
    """Wall time and this process's CPU time of the fastest of *rounds* runs, and the count the
    last one returned (results are dropped between rounds: two rounds' data never live at once)."""
    times, count = [], 0
    for _ in range(rounds):
        gc.collect()
        cpu, started = time.process_time(), time.perf_counter()
        count = run()
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    wall, cpu = min(times)
    return wall, cpu, count


def create_change(i: int) -> Change:
    name = f"u{i}"
    return Change(
        "create",
        "account",
        f"bench{i:06d}",
        name,
        after={
            "username": name,
            "userPrincipalName": f"{name}@{DOMAIN}",
            "displayName": f"Bench User {i}",
            "givenName": "Bench",
            "surname": f"User {i}",
            "department": "1A",
        },
        precondition={"absent": True},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000, help="accounts to create")
    parser.add_argument("--read-users", type=int, default=50_000, help="users seeded and read")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    server, graph_url = start_server(args.read_users)
    try:
        print(
            f"Graph server at {graph_url} with {args.read_users} users "
            f"(started in {time.perf_counter() - started:.1f} s)"
        )
        config = config_for(graph_url)
        target = EntraId(config, credential=StaticToken())
        url = users_url(config)

        # -- bulk read: the target's path against bare httpx paging ---------------------------
        def target_read() -> int:
            return len(target.read(READ_ATTRIBUTES).accounts)

        def target_pages() -> int:
            return len(target._run(target.graph.pages(url, eventual=True)))

        ours, ours_cpu, ours_count = best(args.rounds, target_read)
        paged, paged_cpu, paged_count = best(args.rounds, target_pages)
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "ConsistencyLevel": "eventual",
            "Accept": "application/json",
        }
        with httpx.Client(headers=headers, timeout=config.timeout) as client:
            bare, bare_cpu, bare_count = best(args.rounds, lambda: len(raw_paging(client, url)))
        assert ours_count == bare_count == paged_count == args.read_users, (
            ours_count,
            paged_count,
            bare_count,
        )
        pages = -(-args.read_users // 999)

        # -- writes: apply of N creates, packed into $batch requests ----------------------------
        target.read(READ_ATTRIBUTES)  # the snapshot apply checks its preconditions against
        changes = [create_change(i) for i in range(args.users)]
        before = dict(vars(target.graph.stats))
        cpu, started = time.process_time(), time.perf_counter()
        results = list(target.apply_all(changes, {}))
        applied, applied_cpu = time.perf_counter() - started, time.process_time() - cpu
        after = vars(target.graph.stats)
        sent = {name: after[name] - before[name] for name in before}
        failed = [r for r in results if r.status != "applied"]
        assert not failed, failed[:3]
        with httpx.Client(headers=headers, timeout=config.timeout) as client:
            total = len(raw_paging(client, url))
        assert total == args.read_users + args.users, total
        target.close()
    finally:
        stop_server(server)

    per_trip = sent["writes"] / sent["http_requests"]
    print(
        f"bulk read of {ours_count} users ({pages} pages of 999), best of {args.rounds}:\n"
        f"  bare httpx paging     : {bare:6.2f} s (client CPU {bare_cpu:.2f} s)\n"
        f"  EntraId.read          : {ours:6.2f} s (client CPU {ours_cpu:.2f} s) "
        f"= {ours / bare:.2f} x bare (goal <= 2)\n"
        f"  target's users paging : {paged:6.2f} s (client CPU {paged_cpu:.2f} s) "
        f"= {paged / bare:.2f} x bare (graph.pages alone: no groups, no ObservedState)"
    )
    print(
        f"peak RSS after the reads (ru_maxrss): {rss_peak / 1024:.0f} MB "
        f"(at start {rss_start / 1024:.0f} MB)"
    )
    print(
        f"apply of {args.users} creates: {applied:.2f} s (client CPU {applied_cpu:.2f} s), "
        f"{args.users / applied:.0f} creates/s; "
        f"{sent['writes']} writes in {sent['http_requests']} HTTP requests "
        f"({sent['batches']} $batch): {per_trip:.2f} writes per round trip (goal >= 19); "
        f"throttled {sent['throttled']}, retries {sent['retries']}, "
        f"pacer waited {target.graph.pacer.waited:.1f} s"
    )


if __name__ == "__main__":
    main()
