"""Benchmark: a full and an incremental read of Entra ID (Graph delta) against the Graph server.

    python -m bench.bench_entra_incremental [--users 50000] [--class-size 25] [--changes 50]

The project's Graph server (``tests/fakes/graph_server.py``) runs in its own process on 127.0.0.1,
seeded with N users ``user{i}@school.example`` and a class group ``prov-klas-<i>`` for every
``--class-size`` of them (its members, the first one its owner). In one run, each timed once:

1. a full read without a base (``EntraId.read`` as a preview makes it: nothing kept);
2. night 1: a full read with the state store as its base: the delta links first, the full read,
   the read kept in the store;
3. about ``--changes`` changes by hand over HTTP (attributes, UPNs moved out of and into the
   domain, users deleted and made, members added and removed, owners changed, a group renamed
   out of the prefix, a group deleted);
4. night 2: the incremental read (delta rounds folded into the kept read, the newcomers read in
   full, every group's owners read again in ``$batch``), checked equal to a full read;
5. night 3: the incremental read when nothing changed.

``--round-trip`` makes the server wait before each answer, as a real round trip to Graph takes
time: what a read costs then is mostly how many requests it makes one after the other.

Every time is also given as this process's CPU time (the wall time includes the server's work,
which a real run does not pay on this machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.bench_entra import TOKEN, StaticToken, config_for, start_server, stop_server
from provisioner.model import ObservedState
from provisioner.readcache import ReadCache
from provisioner.state import StateStore
from provisioner.targets.entra import EntraId, snapshot
from provisioner.targets.entra.snapshot import READ_LANES

T = TypeVar("T")
ATTRIBUTES = ("displayName", "givenName", "surname", "department", "userPrincipalName")


def timed(run: Callable[[], T]) -> tuple[T, float, float]:
    cpu, started = time.process_time(), time.perf_counter()
    value = run()
    return value, time.perf_counter() - started, time.process_time() - cpu


def change_by_hand(client: httpx.Client, count: int) -> int:
    """About *count* changes of the kinds an administrator makes; how many were made."""
    root = str(client.base_url).rstrip("/").rsplit("/v1.0", 1)[0] + "/v1.0"

    def ref(oid: str) -> dict[str, str]:
        return {"@odata.id": f"{root}/directoryObjects/{oid}"}

    def ok(response: httpx.Response) -> None:
        assert response.status_code < 300, response.text

    users = client.get("/users", params={"$select": "id", "$top": "999"}).json()["value"]
    groups = client.get("/groups", params={"$select": "id,mailNickname", "$top": "999"}).json()[
        "value"
    ]
    uids = [u["id"] for u in users]
    gids = [g["id"] for g in groups]
    share = max(1, count // 10)
    made = 0
    for i in range(3 * share):  # attributes
        ok(client.patch(f"/users/{uids[10 + i]}", json={"department": "2B", "surname": f"X{i}"}))
        made += 1
    for i in range(share):  # moved out of the domain, deleted, made
        ok(client.patch(f"/users/{uids[100 + i]}", json={"userPrincipalName": f"x{i}@elders.be"}))
        ok(client.delete(f"/users/{uids[200 + i]}"))
        body = {
            "accountEnabled": True,
            "displayName": f"Nieuw {i}",
            "mailNickname": f"nieuw{i}",
            "userPrincipalName": f"nieuw{i}@school.example",
            "employeeId": f"N{i}",
            "passwordProfile": {"password": "Nieuw-Wacht-Woord-1"},
        }
        ok(client.post("/users", json=body))
        made += 3
    for i in range(2 * share):  # members added and removed
        gid = gids[5 + i]
        members = client.get(f"/groups/{gid}/members", params={"$select": "id"}).json()["value"]
        ok(client.delete(f"/groups/{gid}/members/{members[-1]['id']}/$ref"))
        ok(client.post(f"/groups/{gid}/members/$ref", json=ref(uids[-1 - i])))
        made += 2
    for i in range(share):  # owners changed
        gid = gids[50 + i]
        ok(client.post(f"/groups/{gid}/owners/$ref", json=ref(uids[300 + i])))
        made += 1
    ok(client.patch(f"/groups/{gids[1]}", json={"mailNickname": "oude-klas-1"}))
    ok(client.delete(f"/groups/{gids[2]}"))
    return made + 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--class-size", type=int, default=25)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument(
        "--round-trip",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the Graph server waits this long before each answer (a real round trip)",
    )
    parser.add_argument(
        "--read-lanes",
        type=int,
        default=READ_LANES,
        help=f"$batch reads in flight at once (default {READ_LANES})",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    snapshot.READ_LANES = args.read_lanes
    server, graph_url = start_server(
        args.users, "--seed-classes", str(args.class_size), "--round-trip", str(args.round_trip)
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-entra-inc-"))
    store = folder / "state.db"
    StateStore(store).close()
    try:
        classes = -(-args.users // args.class_size)
        print(
            f"Graph server at {graph_url} with {args.users} users and {classes} class groups "
            f"(started in {time.perf_counter() - started:.1f} s), round trip "
            f"{args.round_trip * 1000:.0f} ms, {args.read_lanes} $batch read(s) in flight"
        )
        config = config_for(graph_url)

        def night(base: bool) -> ObservedState:
            target = EntraId(config, credential=StaticToken())
            try:
                cache = (
                    ReadCache(store, target.describe(), mappings="bench", full_read_every=7)
                    if base
                    else None
                )
                return target.read(ATTRIBUTES, cache)
            finally:
                target.close()

        rows: list[tuple[str, float, float, Any]] = []
        state, wall, cpu = timed(lambda: night(False))
        rows.append(("full read, nothing kept (before)", wall, cpu, len(state.accounts)))
        state, wall, cpu = timed(lambda: night(True))
        rows.append(("night 1: delta links + full read + kept", wall, cpu, len(state.accounts)))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=graph_url, headers=headers, timeout=120) as client:
            made = change_by_hand(client, args.changes)
        state, wall, cpu = timed(lambda: night(True))
        rows.append((f"night 2: incremental, {made} changes", wall, cpu, len(state.accounts)))
        full, fwall, fcpu = timed(lambda: night(False))
        assert state == full, "the incremental read differs from a full read"
        rows.append(("  the same by a full read (equal)", fwall, fcpu, len(full.accounts)))
        state, wall, cpu = timed(lambda: night(True))
        rows.append(("night 3: incremental, nothing changed", wall, cpu, len(state.accounts)))
        assert state == full
        kept = store.stat().st_size
    finally:
        stop_server(server)
    print(f"{'read':44} {'wall':>8} {'CPU':>8}  accounts")
    for name, wall, cpu, count in rows:
        print(f"{name:44} {wall:7.2f}s {cpu:7.2f}s  {count}")
    print(f"state store with the kept read: {kept / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
