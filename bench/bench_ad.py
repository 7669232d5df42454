"""Benchmark: applying to a real Samba AD DC, and a no-op plan over many managed accounts.

    python -m bench.bench_ad [--creates 2000] [--managed 20000]

Needs root and the Samba packages (``bash scripts/install-samba``). In one run, on one fresh DC:

- creates: ``apply`` of N account creations with passwords (precondition check, add with
  ``unicodePwd``, objectGUID read-back) against a bare ldap3 ``add`` loop of the same entries;
- no-op plan: M managed accounts (made without passwords, which is faster), then the target's
  paged read and the diff against a desired state that matches: the time of each part.
Goal: creates ≥ 0.9 × the bare loop's rate (the DC's password hashing is the limit).
"""

from __future__ import annotations

import argparse
import time

from provisioner.model import Derived, DesiredAccount, DesiredState, Provenance
from provisioner.plan.diff import diff
from provisioner.plan.model import Change
from provisioner.secret import Secret
from provisioner.targets.ad import ActiveDirectory
from provisioner.targets.ad_settings import AdConfig
from tests.fakes.samba import SambaDC

WHY = Provenance("bench", "bench:1", "{{ x }}", ())


def create_change(i: int) -> Change:
    name = f"bench.user{i}"
    return Change(
        "create",
        "account",
        str(100000 + i),
        f"Bench/{name}",
        after={
            "username": name,
            "ou": ["Bench"],
            "sAMAccountName": name,
            "givenName": "Bench",
            "sn": f"User {i}",
            "displayName": f"Bench User {i}",
            "userPrincipalName": f"{name}@school.test",
        },
        precondition={"absent": True},
    )


def admin_config(dc: SambaDC) -> AdConfig:
    """The target's settings for a benchmark DC: bound as its administrator, managing
    ``OU=Managed``."""
    return AdConfig(
        url=dc.ldaps_url,
        bind_user=dc.admin_user,
        password=Secret(dc.admin_password, "bench"),
        base_dn=dc.base_dn,
        managed_root="OU=Managed",
        ca_file=dc.ca_file,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--managed", type=int, default=20_000)
    args = parser.parse_args()

    with SambaDC() as dc:
        config = admin_config(dc)
        target = ActiveDirectory(config)
        target.apply(
            Change(
                "create_ou",
                "ou",
                "Bench",
                "Bench",
                after={"ou": ["Bench"]},
                precondition={"absent": True},
            )
        )

        # -- creates through apply ---------------------------------------------------------
        changes = [create_change(i) for i in range(args.creates)]
        started = time.perf_counter()
        results = [target.apply(c) for c in changes]
        ours = time.perf_counter() - started
        assert all(r.status == "applied" for r in results), results[0]

        # -- the same entries with a bare ldap3 loop -----------------------------------------
        conn = dc.connect()
        conn.add(f"OU=Bare,{dc.base_dn}", ["top", "organizationalUnit"])
        started = time.perf_counter()
        for i in range(args.creates):
            name = f"bare.user{i}"
            ok = conn.add(
                f"CN={name},OU=Bare,{dc.base_dn}",
                ["top", "person", "organizationalPerson", "user"],
                {
                    "sAMAccountName": name,
                    "givenName": "Bench",
                    "sn": f"User {i}",
                    "displayName": f"Bench User {i}",
                    "userPrincipalName": f"{name}@school.test",
                    "employeeID": str(200000 + i),
                    "userAccountControl": 512,
                    "unicodePwd": '"Bench-Passw0rd!"'.encode("utf-16-le"),
                },
            )
            assert ok, conn.result
        bare = time.perf_counter() - started
        print(
            f"creates with passwords: apply {args.creates / ours:.1f}/s ({ours:.1f} s), "
            f"bare ldap3 add loop {args.creates / bare:.1f}/s ({bare:.1f} s): "
            f"{bare / ours:.2f} x the bare rate (goal >= 0.9)"
        )

        # -- a no-op plan over many managed accounts ------------------------------------------
        root = f"OU=Managed,{dc.base_dn}"
        conn.add(root, ["top", "organizationalUnit"])
        conn.add(f"OU=Bulk,{root}", ["top", "organizationalUnit"])
        started = time.perf_counter()
        for i in range(args.managed):
            name = f"m{i}"
            conn.add(
                f"CN={name},OU=Bulk,{root}",
                ["top", "person", "organizationalPerson", "user"],
                {
                    "sAMAccountName": name,
                    "employeeID": str(i),
                    "department": "1A",
                    "displayName": f"Managed {i}",
                },
            )
        made = time.perf_counter() - started
        print(f"made {args.managed} managed accounts without passwords in {made:.0f} s")

        started = time.perf_counter()
        observed = target.read({"sAMAccountName", "department", "displayName"})
        read = time.perf_counter() - started
        desired = DesiredState()
        for account in observed.accounts:
            # Samba keeps accounts made without a password disabled; the desired state here
            # is "exactly what is there", so the diff is a no-op and only its cost is measured.
            account.enabled = True
            assert account.anchor is not None
            desired.accounts[account.anchor] = DesiredAccount(
                "staff",
                account.anchor,
                account.username,
                account.ou,
                {n: Derived(v, WHY) for n, v in account.attributes.items()},
                "030569",
            )
        desired.ous = set(observed.ous)
        started = time.perf_counter()
        changes = diff(desired, observed)
        diffed = time.perf_counter() - started
        assert changes == [], changes[:3]
        print(
            f"no-op plan over {len(observed.accounts)} managed accounts: read {read:.2f} s "
            f"(paged, {config.page_size} per page), diff {diffed:.2f} s, "
            f"total {read + diffed:.2f} s"
        )
        target.close()


if __name__ == "__main__":
    main()
