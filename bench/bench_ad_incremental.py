"""Benchmark: the incremental read of the managed root against a full read, on a real Samba DC.

    python -m bench.bench_ad_incremental [--pupils 10000] [--changes 50] [--host 127.0.0.1]

Needs root and the Samba packages (``bash scripts/install-samba``). On one fresh DC: PUPILS user
accounts in classes of 25 (made without passwords, which is faster), each class an OU with its
class group, then, each read by a fresh target as a night makes one:

- a full read without a kept read (what ``plan`` did before), and one that keeps it;
- an incremental read with nothing changed;
- CHANGES changes by hand (attributes, moves between classes, members added and removed,
  accounts deleted), then the incremental read, checked equal to a full read made after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, Connection, Server

from provisioner.model import ObservedState
from provisioner.readcache import ReadCache
from provisioner.secret import Secret
from provisioner.state import StateStore
from provisioner.targets.ad import ActiveDirectory
from provisioner.targets.ad_settings import AdConfig
from tests.fakes.samba import SambaDC

ATTRIBUTES = frozenset({"sAMAccountName", "displayName", "department", "givenName", "sn"})
CLASS_SIZE = 25
USER = ["top", "person", "organizationalPerson", "user"]


def fill(conn: Connection, root: str, pupils: int) -> dict[str, str]:
    """The managed root with its classes: the DN of each pupil by name."""
    assert conn.add(root, ["top", "organizationalUnit"]), conn.result
    dns = {}
    for number in range(-(-pupils // CLASS_SIZE)):
        ou = f"OU=c{number},{root}"
        conn.add(ou, ["top", "organizationalUnit"])
        members = []
        for i in range(min(CLASS_SIZE, pupils - number * CLASS_SIZE)):
            name = f"p{number}_{i}"
            dn = f"CN={name},{ou}"
            conn.add(
                dn,
                USER,
                {
                    "sAMAccountName": name,
                    "employeeID": name,
                    "department": f"c{number}",
                    "displayName": f"Pupil {name}",
                    "givenName": "Pupil",
                    "sn": name,
                },
            )
            dns[name], members = dn, [*members, dn]
        conn.add(
            f"CN=g{number},{ou}",
            ["top", "group"],
            {"sAMAccountName": f"g{number}", "adminDescription": f"g{number}", "member": members},
        )
    return dns


def change(conn: Connection, root: str, dns: dict[str, str], count: int) -> None:
    """*count* changes by hand, spread over the root: 60 % attributes, 20 % moves to another
    class, 10 % a member removed and added elsewhere, 10 % deletions."""
    names = sorted(dns)[:: max(1, len(dns) // count)][:count]
    for i, name in enumerate(names):
        dn, kind = dns[name], i % 10
        if kind < 6:
            assert conn.modify(dn, {"displayName": [(MODIFY_REPLACE, [f"Changed {name}"])]})
        elif kind < 8:
            assert conn.modify_dn(dn, f"CN={name}", new_superior=f"OU=c0,{root}"), conn.result
        elif kind < 9:
            group = f"CN=g{name[1:].split('_')[0]},{dn.split(',', 1)[1]}"
            assert conn.modify(group, {"member": [(MODIFY_DELETE, [dn])]}), conn.result
            assert conn.modify(f"CN=g0,OU=c0,{root}", {"member": [(MODIFY_ADD, [dn])]})
        else:
            assert conn.delete(dn), conn.result


def normalised(state: ObservedState) -> dict[str, Any]:
    return {
        "accounts": sorted((dataclasses.asdict(a) for a in state.accounts), key=lambda a: a["id"]),
        "groups": sorted((dataclasses.asdict(g) for g in state.groups), key=lambda g: g["id"]),
        "ous": sorted(state.ous),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()

    with SambaDC(args.host) as dc, tempfile.TemporaryDirectory() as tmp:
        config = AdConfig(
            url=dc.ldaps_url,
            bind_user=dc.admin_user,
            password=Secret(dc.admin_password, "bench"),
            base_dn=dc.base_dn,
            managed_root="OU=Managed",
            ca_file=dc.ca_file,
        )
        server = Server(args.host, port=636, use_ssl=True, tls=dc.tls(), get_info=None)
        conn = Connection(
            server, dc.admin_user, dc.admin_password, auto_bind=True, receive_timeout=120
        )
        root = f"OU=Managed,{dc.base_dn}"
        started = time.perf_counter()
        dns = fill(conn, root, args.pupils)
        print(f"made {len(dns)} pupils in {time.perf_counter() - started:.0f} s")
        store = Path(tmp) / "state.db"
        StateStore(store).close()

        def night(cached: bool) -> tuple[ObservedState, float]:
            target = ActiveDirectory(config)
            base = ReadCache(store, target.describe(), mappings="bench", full_read_every=7)
            started = time.perf_counter()
            state = target.read(ATTRIBUTES, base if cached else None)
            took = time.perf_counter() - started
            target.close()
            return state, took

        def timed(what: str, read: Callable[[], tuple[ObservedState, float]]) -> ObservedState:
            state, took = read()
            objects = len(state.accounts) + len(state.groups) + len(state.ous)
            print(f"{what}: {took:.2f} s ({objects} managed objects)")
            return state

        timed("full read, nothing kept", lambda: night(False))
        timed("full read, kept in the state store", lambda: night(True))
        timed("incremental read, nothing changed", lambda: night(True))
        change(conn, root, dns, args.changes)
        print(f"{args.changes} changes by hand")
        incremental = timed(f"incremental read, {args.changes} changed", lambda: night(True))
        full = timed("full read after them (the reference)", lambda: night(False))
        assert normalised(incremental) == normalised(full), "the incremental read differs"
        print("the incremental read equals the full read")


if __name__ == "__main__":
    main()
