"""Benchmark: a plan's two reads one after the other, and at the same time (issue 17).

    python -m bench.bench_overlap [--pupils 5000] [--tenant-users 20000] [--rounds 3]

The project's Informat server (``--pupils`` pupils over two schools) and its Graph server (over
TLS, an application registered, ``--tenant-users`` users seeded in a managed domain) each run in
a child process on 127.0.0.1, as two remote services would: their work does not compete with the
client's for the GIL. The configuration is the Entra example's (``examples/entra/mappings``).
Measured in one run, each the best of ``--rounds``, alternating:

- source alone: ``read_for_mappings`` (download + parse);
- target alone: ``observe`` (the target's read of the managed scope, from a fresh target);
- one after the other: ``read_for_mappings``, then ``observe`` (what plan, apply and run did
  before: ``compare`` read the target after the source);
- at the same time: ``read_source_and_target``.

What a plan does after the reads (``compare``'s state store, names and diff) is the same code
either way, so it is left out: with seeded users that the mappings do not match, it is dominated
by ``taken_outside`` asking Graph for every new name, which says nothing about the overlap. At
best the overlap saves the shorter of the two reads; both parse in this process (the GIL), so
what it saves is the time each waits for its server.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provisioner.config import load_config
from provisioner.pipeline import (
    Prepared,
    observe,
    open_target,
    prepare_config,
    read_for_mappings,
    read_source_and_target,
)

ROOT = Path(__file__).resolve().parent.parent
TENANT = "school.onmicrosoft.com"
CLIENT = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
SECRET = "bench-app-secret"


def start(module: str, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """A server in a child process, and the lines it printed before serving (its URL first)."""
    child = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert child.stdout is not None
    first = child.stdout.readline().strip()
    if not first.startswith("http"):
        child.kill()
        raise SystemExit(f"{module} did not start (printed {first!r})")
    return child, [first]


def stop(child: subprocess.Popen[str]) -> None:
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def write_config(folder: Path, informat_url: str, graph: list[str]) -> Path:
    graph_url, authority, ca_file = graph
    path = folder / "provisioner.yaml"
    path.write_text(
        f"mappings: {ROOT / 'examples/entra/mappings'}\n"
        "state: state.db\n"
        "policy:\n  freeze_leavers: []\n"
        "source:\n  informat:\n"
        f"    url: {informat_url}\n"
        "    login: webservices@school.be\n"
        "    password: ${BENCH_INFORMAT_PASSWORD}\n"
        "    schooljaar: 2025-26\n"
        "    instelnrs: ['030569', '030577']\n"
        "target:\n  entra:\n"
        f"    tenant_id: {TENANT}\n"
        f"    client_id: {CLIENT}\n"
        "    client_secret: ${BENCH_ENTRA_SECRET}\n"
        # school.example: where the server seeds its users, so that the read holds them all
        "    domains: [leerling.school.be, school.be, school.example]\n"
        f"    graph_url: {graph_url}\n"
        f"    authority: {authority}\n"
        f"    ca_file: {ca_file}\n",
        encoding="utf-8",
    )
    return path


def timed(run: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    started = time.perf_counter()
    count = run()
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=5000)
    parser.add_argument("--tenant-users", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    informat, informat_lines = start("tests.fakes.informat_server", "--pupils", str(args.pupils))
    graph, graph_lines = start(
        "tests.fakes.graph_server",
        "--tls",
        "--tenant",
        TENANT,
        "--client-id",
        CLIENT,
        "--client-secret",
        SECRET,
        "--seed-users",
        str(args.tenant_users),
    )
    assert graph.stdout is not None
    graph_lines += [graph.stdout.readline().split(" ", 1)[1].strip() for _ in range(2)]
    try:
        with tempfile.TemporaryDirectory() as folder:
            os.chdir(folder)
            os.environ.update(BENCH_INFORMAT_PASSWORD="geheim", BENCH_ENTRA_SECRET=SECRET)
            config = load_config(write_config(Path(folder), informat_lines[0], graph_lines))
            prepared = prepare_config(config)
            measure(prepared, args.rounds)
    finally:
        stop(informat)
        stop(graph)


def measure(prepared: Prepared, rounds: int) -> None:
    def source_alone() -> int:
        return sum(sum(by_unit.values()) for by_unit in read_for_mappings(prepared).counts.values())

    def target_alone() -> int:
        target = open_target(prepared)
        assert target is not None
        try:
            return len(observe(prepared, target).accounts)
        finally:
            target.close()

    def one_after_the_other() -> int:
        target = open_target(prepared)
        assert target is not None
        try:
            read = read_for_mappings(prepared)
            return len(read.rows.schools) + len(observe(prepared, target).accounts)
        finally:
            target.close()

    def at_the_same_time() -> int:
        target = open_target(prepared)
        assert target is not None
        try:
            read, observed = read_source_and_target(prepared, target)
            assert observed is not None
            return len(read.rows.schools) + len(observed.accounts)
        finally:
            target.close()

    runs = {
        "source alone (rows)": source_alone,
        "target alone (accounts)": target_alone,
        "both reads, one after the other": one_after_the_other,
        "both reads, at the same time": at_the_same_time,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            elapsed, counts[name] = timed(run)
            times[name].append(elapsed)
    for name, elapsed in times.items():
        print(f"{name:45} {min(elapsed):7.2f} s  ({counts[name]:,})")
    before = min(times["both reads, one after the other"])
    after = min(times["both reads, at the same time"])
    floor = max(min(times["source alone (rows)"]), min(times["target alone (accounts)"]))
    print(f"{'saved':45} {before - after:7.2f} s  ({after / before:.2f} × one after the other)")
    print(f"{'at the same time / the longer read alone':45} {after / floor:7.2f} ×")


if __name__ == "__main__":
    main()
