"""Benchmark: serialising a plan — ``plan_to_json``, the JSON text, ``save_plan`` and
``load_sealed_plan`` — for a synthetic plan of about 60,000 changes (59,850 for 52,500 pupils).

    python -m bench.bench_plan [--pupils 52500] [--rounds 3]

The plan has the shape of a first night for a scholengroep of *pupils* pupils, as
:mod:`provisioner.plan.diff` makes it: an OU per class, a create per pupil (username, OU and ten
attributes), a group per class with a create and one add_member naming its pupils, and a few
hundred updates, moves and disables; its header names every account (``people``,
``account_schools``) as a real plan's does. Times are the best of *rounds*; peak memory is the
process's high-water mark (VmHWM), reset before each step (``/proc/self/clear_refs``), less its
resident memory before the step: what the step needed on top of the plan it was given.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner.plan.jsontext import write_indented
from provisioner.plan.model import Change, Observations, Plan, PlanHeader, Precondition
from provisioner.plan.planfile import load_sealed_plan, plan_to_json, save_plan
from provisioner.plan.seal import key_path, load_key

SCHOOL = "030569"
PUPILS_PER_CLASS = 25


def synthetic_plan(pupils: int) -> Plan:
    classes = [
        f"{year}{letter}{n}" for year in range(1, 7) for letter in "ABCDEFGH" for n in range(99)
    ]
    classes = classes[: max(1, pupils // PUPILS_PER_CLASS)]
    changes: list[Change] = []
    people: dict[str, dict[str, str]] = {}
    for klas in classes:
        ou = ["Leerlingen", klas]
        changes.append(
            Change(
                "create_ou",
                "ou",
                "/".join(ou),
                "/".join(ou),
                after={"ou": ou},
                why=("an OU the mappings place objects in",),
                precondition=Precondition(absent=True),
            )
        )
    members: dict[str, list[str]] = {klas: [] for klas in classes}
    for index in range(pupils):
        anchor = str(100000 + index)
        klas = classes[index % len(classes)]
        username = f"voornaam.achternaam{index}"
        name = f"Voornaam Achternaam-{index} Ç"
        members[klas].append(anchor)
        people[anchor] = {"name": name, "username": username, "group": f"klas-{klas}"}
        changes.append(
            Change(
                "create",
                "account",
                anchor,
                f"Leerlingen/{klas}/{username}",
                after={
                    "username": username,
                    "ou": ["Leerlingen", klas],
                    "givenName": "Voornaam",
                    "sn": f"Achternaam-{index}",
                    "displayName": name,
                    "mail": f"{username}@school.be",
                    "userPrincipalName": f"{username}@school.be",
                    "department": klas,
                    "company": "Scholengroep",
                    "description": f"leerling {anchor}",
                    "employeeID": anchor,
                    "proxyAddresses": [f"SMTP:{username}@school.be", f"smtp:{anchor}@school.be"],
                },
                why=(f"pupils {anchor} is in the source and has no account",),
                precondition=Precondition(absent=True),
            )
        )
    for klas in classes:
        key = f"klas-{klas}"
        changes.append(
            Change(
                "create_group",
                "group",
                key,
                f"Groepen/{key}",
                after={"ou": ["Groepen"], "cn": key, "displayName": f"Klas {klas}"},
                why=(f"group classes {key} has members in the source",),
                precondition=Precondition(absent=True),
            )
        )
        changes.append(
            Change(
                "add_member",
                "group",
                key,
                f"Groepen/{key}",
                after={"members": members[klas]},
                why=("members computed from the source",),
                precondition=Precondition(created_in_this_plan=True),
            )
        )
    for index in range(pupils // 100):
        anchor = str(900000 + index)
        people[anchor] = {"name": f"Oud {index}", "username": f"oud{index}", "group": ""}
        before = {"department": "1A0", "description": None}
        changes.append(
            Change(
                "update",
                "account",
                anchor,
                f"guid-{anchor}",
                before=before,
                after={"department": "2A0", "description": "leerling"},
                why=("department from {{ Lln.Klascode }}",),
                precondition=Precondition(id=f"guid-{anchor}", attributes=before),
            )
        )
        changes.append(
            Change(
                "disable",
                "account",
                anchor,
                f"guid-{anchor}",
                before={"enabled": True},
                after={"enabled": False},
                why=("left the source on 2026-08-31",),
                precondition=Precondition(id=f"guid-{anchor}", enabled=True),
            )
        )
    header = PlanHeader(
        created="2026-12-01T22:00:00+00:00",
        expires="2026-12-02T10:00:00+00:00",
        config_hash="c" * 64,
        mappings_hash="m" * 64,
        source_hash="s" * 64,
        target="(no target: preview against an empty directory)",
        source_as_of="2026-12-01",
        warnings=["a synthetic plan"],
        persons={SCHOOL: pupils},
        school_counts={SCHOOL: {"create": pupils}},
        managed_accounts=pupils // 100,
        managed_per_school={SCHOOL: pupils // 100},
        account_schools=dict.fromkeys(people, SCHOOL),
        school_names={SCHOOL: "Synthetisch Atheneum"},
        people=people,
        group_names={f"klas-{klas}": f"Klas {klas}" for klas in classes},
    )
    observations = Observations(accounts={a: ["pupils", SCHOOL] for a in people})
    return Plan(header, changes, observations)


class Sink:
    """Standard output that throws the text away: what printing costs apart from the terminal."""

    def write(self, text: str) -> int:
        return len(text)


def status_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process, in MB (not ru_maxrss: see the notes in
    docs/benchmarks.md)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def extra_peak_mb(work: Callable[[], Any]) -> float:
    """How far above its resident memory before *work* the process peaked while doing it."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = status_mb("VmRSS")
    work()
    return status_mb("VmHWM") - before


def best(rounds: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=52500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    plan = synthetic_plan(args.pupils)
    print(
        f"{len(plan.changes):,} changes; resident with the plan built: {status_mb('VmRSS'):.0f} MB"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.json"
        key_file = key_path(Path(folder) / "state.db")
        key = load_key(key_file, create=True)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("plan_to_json", lambda: plan_to_json(plan)),
            (
                "json.dumps(plan_to_json(plan), indent=1) (what plan --json printed)",
                lambda: json.dumps(plan_to_json(plan), indent=1, ensure_ascii=False),
            ),
            (
                "write_indented(plan_to_json(plan)) to a sink (what it prints now)",
                lambda: write_indented(plan_to_json(plan), Sink()),
            ),
            ("save_plan (sealed, fsync)", lambda: save_plan(plan, path, key)),
            ("load_sealed_plan", lambda: load_sealed_plan(path, key_file)),
        ]
        for name, work in steps:
            seconds = best(args.rounds, work)
            extra = extra_peak_mb(work)
            print(f"{name:70} {seconds:6.2f} s  +{extra:5.0f} MB peak")
        print(f"plan file: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
