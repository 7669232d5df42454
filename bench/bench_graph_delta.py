"""Delta rounds on the project's fake Graph server: what a full and an incremental read cost.

Seeds ``--users`` users and one group of 25 members per 25 users, then times over HTTP (raw
httpx, 999 objects a page): the first ``/users/delta`` and ``/groups/delta`` rounds (everything),
a set of changes (``--changes`` user PATCHes and as many member removals), and the incremental
rounds that bring them back. The fake is the test double the incremental Entra reader will be
tested and benchmarked against, so its own cost must stay well below the reader's::

    .venv/bin/python -m bench.bench_graph_delta --users 50000
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx

from tests.fakes.graph_server import GraphServer

PAGE = {"Prefer": "odata.maxpagesize=999"}


def delta_round(client: httpx.Client, url: str) -> tuple[list[dict[str, Any]], str]:
    values: list[dict[str, Any]] = []
    body = client.get(url, headers=PAGE).json()
    while True:
        values += body["value"]
        if "@odata.deltaLink" in body:
            return values, body["@odata.deltaLink"]
        body = client.get(body["@odata.nextLink"], headers=PAGE).json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--changes", type=int, default=500)
    args = parser.parse_args()
    with GraphServer() as graph:
        started = time.perf_counter()
        uids = graph.seed_users(args.users)
        gids = [
            graph.add_group(displayName=f"Klas {i}", members=uids[i : i + 25])["id"]
            for i in range(0, len(uids), 25)
        ]
        seeded = time.perf_counter() - started
        with httpx.Client(base_url=graph.url, headers=graph.auth_headers, timeout=120) as client:
            user_url = "/users/delta?$select=displayName,employeeId,userPrincipalName"
            group_url = "/groups/delta?$select=displayName,members"
            t = time.perf_counter()
            users, user_link = delta_round(client, user_url)
            full_users = time.perf_counter() - t
            t = time.perf_counter()
            groups, group_link = delta_round(client, group_url)
            full_groups = time.perf_counter() - t
            t = time.perf_counter()
            for i in range(args.changes):
                client.patch(f"/users/{uids[i * 7 % len(uids)]}", json={"employeeId": f"E{i}"})
                gid = gids[i % len(gids)]
                client.delete(
                    f"/groups/{gid}/members/{uids[i % len(gids) * 25 + i // len(gids)]}/$ref"
                )
            writes = time.perf_counter() - t
            t = time.perf_counter()
            changed_users, _ = delta_round(client, user_link)
            inc_users = time.perf_counter() - t
            t = time.perf_counter()
            changed_groups, _ = delta_round(client, group_link)
            inc_groups = time.perf_counter() - t
    print(f"users {args.users}, groups {len(gids)}, changes {args.changes} + {args.changes}")
    print(f"seed                         {seeded:7.2f} s")
    print(f"full users round             {full_users:7.2f} s  ({len(users)} objects)")
    print(f"full groups round (members)  {full_groups:7.2f} s  ({len(groups)} objects)")
    print(f"{2 * args.changes} writes over HTTP       {writes:7.2f} s")
    print(
        f"incremental users round      {inc_users * 1000:7.1f} ms  ({len(changed_users)} objects)"
    )
    print(
        f"incremental groups round     {inc_groups * 1000:7.1f} ms  ({len(changed_groups)} objects)"
    )


if __name__ == "__main__":
    main()
