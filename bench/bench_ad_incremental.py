"""Benchmark: the incremental read of the managed root against a full read, on a real Samba DC.

    python -m bench.bench_ad_incremental [--pupils 10000] [--changes 50] [--rounds 2]
        [--host 127.0.0.1] [--before FILE]

Needs root and the Samba packages (``bash scripts/install-samba``). On one fresh DC: PUPILS user
accounts in classes of 25 (made without passwords, which is faster), each class an OU with its
class group, then, each read by a fresh target as a night makes one:

- a full read without a kept read (what ``plan`` did before), and one that keeps it;
- an incremental read with nothing changed;
- ROUNDS times: CHANGES changes by hand (attributes, moves between classes, members added and
  removed, accounts deleted), then the incremental read, checked equal to a full read after it.

``--before FILE``: also time the full read of another version of ``provisioner/targets/ad.py``
on the same DC, for a before/after in one run (the read before the incremental one:
``git show 21ea32c:provisioner/targets/ad.py > /tmp/ad_before.py``).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import importlib.util
import sys
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


def change(conn: Connection, root: str, dns: dict[str, str], count: int, round: int) -> None:
    """*count* changes by hand, spread over the root: 60 % attributes, 20 % moves to another
    class, 10 % a member removed and added elsewhere, 10 % deletions (other pupils each
    *round*)."""
    names = sorted(dns)[round + 1 :: max(1, len(dns) // count)][:count]
    for i, name in enumerate(names):
        dn, kind = dns[name], i % 10
        if kind < 6:
            assert conn.modify(dn, {"displayName": [(MODIFY_REPLACE, [f"Changed {name}"])]})
        elif kind < 8:
            assert conn.modify_dn(dn, f"CN={name}", new_superior=f"OU=c0,{root}"), conn.result
            dns[name] = f"CN={name},OU=c0,{root}"
        elif kind < 9:
            ou = dn.split(",", 1)[1]
            number = int(ou.split(",", 1)[0].removeprefix("OU=c"))
            assert conn.modify(f"CN=g{number},{ou}", {"member": [(MODIFY_DELETE, [dn])]})
            other = f"CN=g{number + 1},OU=c{number + 1},{root}"
            assert conn.modify(other, {"member": [(MODIFY_ADD, [dn])]}), conn.result
        else:
            assert conn.delete(dn), conn.result
            del dns[name]


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
    parser.add_argument("--rounds", type=int, default=2, help="of CHANGES changes each")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--before", type=Path, help="another version of targets/ad.py")
    parser.add_argument("--profile", type=Path, help="cProfile the first incremental read here")
    args = parser.parse_args()
    if args.before:  # loaded first: a mistake shows before the DC is filled
        spec = importlib.util.spec_from_file_location("ad_before", args.before)
        assert spec and spec.loader
        before = sys.modules["ad_before"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)

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

        profile = cProfile.Profile() if args.profile else None

        def night(cached: bool) -> tuple[ObservedState, float]:
            target = ActiveDirectory(config)
            base = ReadCache(store, target.describe(), mappings="bench", full_read_every=7)
            started = time.perf_counter()
            if cached and profile:
                state = profile.runcall(target.read, ATTRIBUTES, base)
                profile.dump_stats(args.profile)
            else:
                state = target.read(ATTRIBUTES, base if cached else None)
            took = time.perf_counter() - started
            target.close()
            return state, took

        def timed(what: str, read: Callable[[], tuple[ObservedState, float]]) -> ObservedState:
            state, took = read()
            objects = len(state.accounts) + len(state.groups) + len(state.ous)
            print(f"{what}: {took:.2f} s ({objects} managed objects)")
            return state

        def before_read() -> tuple[ObservedState, float]:
            target = before.ActiveDirectory(config)
            started = time.perf_counter()
            state = target.read(ATTRIBUTES)
            took = time.perf_counter() - started
            target.close()
            return state, took

        for _ in range(2):
            if args.before:
                timed(f"full read of {args.before}", before_read)
            timed("full read, nothing kept", lambda: night(False))
        timed("full read, kept in the state store", lambda: night(True))
        for _ in range(2):
            timed("incremental read, nothing changed", lambda: night(True))
            profile = None  # the first one only
        for round in range(args.rounds):
            change(conn, root, dns, args.changes, round)
            print(f"{args.changes} changes by hand")
            incremental = timed(f"incremental read, {args.changes} changed", lambda: night(True))
            full = timed("full read after them (the reference)", lambda: night(False))
            if args.before:
                timed(f"full read of {args.before} after them", before_read)
            assert normalised(incremental) == normalised(full), "the incremental read differs"
        print("the incremental read equals the full read")


if __name__ == "__main__":
    main()
