"""Benchmark: a no-op night (``plan``) against a Samba DC holding everyone, and its floor.

    python -m bench.bench_nightly --pupils 10000 [--profile FILE]

Needs root and the Samba packages (``bash scripts/install-samba``). In one run:

1. a synthetic scholengroep (two instellingsnummers, N pupils, N/10 staff) served by the
   project's Informat server on 127.0.0.1, and a fresh Samba AD DC (the tests' helper);
2. the DC filled with everyone by the first night itself: ``apply`` through the command line,
   with one change for speed: accounts are created without a password (``userAccountControl``
   NORMAL_ACCOUNT | PASSWD_NOTREQD, so they are enabled), because the DC's password hashing
   (~20 ms of server CPU each) would dominate the fill. Everything else — OUs, attributes,
   groups, members, the state store — is what a real first night leaves behind;
3. each measure in a fresh child process (so the Informat server in this process does not share
   its GIL, as in production where both are remote), one run each:

   - no-op ``plan``: ``provisioner.cli.main(["plan", "--config", …])``, which must exit 0;
   - ``fetch``: ``main(["fetch", "--config", …])``: download + parse of the data sets and fields
     the mappings use;
   - bare read: an ldap3 paged search of the managed root (same filter, page size and attributes
     as the target's read) that builds nothing;
   - floor = fetch + bare read; peak memory = the plan child's VmHWM.

With ``--profile FILE`` the no-op plan runs once more under cProfile (its stats saved to FILE and
the top entries by cumulative time printed). Goal (issue 17): plan ≤ 1.5 × its floor.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_informat import peak_rss_kib
from tests.conftest import REFERENCE_DAY
from tests.scenarios import config_head

ROOT = Path(__file__).resolve().parent.parent

PASSWD_NOTREQD = 0x20


def write_config(directory: Path, informat_url: str, dc: Any, managed_root: str) -> Path:
    path = directory / "provisioner.yaml"
    path.write_text(
        config_head(informat_url, ROOT / "mappings") + "target:\n  ad:\n"
        f"    url: {dc.ldaps_url}\n"
        f"    bind_user: {dc.admin_user}\n"
        "    password: ${TEST_AD_PASSWORD}\n"
        f"    base_dn: {dc.base_dn}\n"
        f"    managed_root: {managed_root}\n"
        f"    ca_file: {dc.ca_file}\n"
    )
    return path


def create_without_password(self: Any, change: Any, *, password: str) -> Any:
    """``ActiveDirectory._create`` without ``unicodePwd``: the bench's fill only."""
    from provisioner.targets import ad

    after = change.after
    username = str(after["username"])
    ou = tuple(after["ou"] or ())
    dn = self.object_dn(str(after.get("cn") or username), ou)
    attributes = {
        name: value
        for name, value in after.items()
        if name not in ("username", "ou", *ad._RDN_ATTRIBUTES) and value not in ("", None)
    }
    attributes.setdefault("sAMAccountName", username)
    attributes[self.config.anchor_attribute] = change.key
    attributes["userAccountControl"] = ad.NORMAL_ACCOUNT | PASSWD_NOTREQD
    conn = self.connect()
    if not conn.add(dn, ["top", "person", "organizationalPerson", "user"], attributes):
        return ad.Result(change, "failed", ad._explain(conn.result))
    self._anchors.put(ad.Kind.ACCOUNT, change.key, dn)
    return self._ok(change)


def fill(config: Path) -> None:
    """The first night, applied once (accounts without passwords)."""
    from provisioner.cli import main
    from provisioner.targets.ad import ActiveDirectory

    original = ActiveDirectory._create
    ActiveDirectory._create = create_without_password  # type: ignore[method-assign]
    try:
        code = main(["apply", "--config", str(config), "--approve", "bench: the first night"])
    finally:
        ActiveDirectory._create = original  # type: ignore[method-assign]
    assert code == 0, f"the first night exited {code}"


def bare_read(config_path: Path) -> int:
    """A paged search of the managed root with the attributes the target reads; builds nothing."""
    from ldap3 import SUBTREE

    from provisioner.pipeline import mapped_attributes, prepare

    prepared = prepare(config_path)
    ad_config = prepared.config.target.ad  # type: ignore[union-attr]
    accounts, groups = mapped_attributes(prepared)
    from provisioner.targets.ad import MANAGED_OBJECTS, ActiveDirectory

    target = ActiveDirectory(ad_config)
    wanted = target.read_attributes(accounts | groups)
    conn = target.connect()
    seen = 0
    for entry in conn.extend.standard.paged_search(
        target.root_dn,
        MANAGED_OBJECTS,
        search_scope=SUBTREE,
        attributes=wanted,
        paged_size=ad_config.page_size,
        generator=True,
    ):
        if entry.get("type") == "searchResEntry":
            seen += 1
    target.close()
    return seen


LABELS = (
    "prepare (config, mappings)",
    "source: download + parse",
    "compare (all below)",
    "  target read + ObservedState",
    "  mapping (build_desired, names, checks)",
    "plan (diff, lifecycle, policy)",
    "rendering",
)


def time_phases() -> dict[str, float]:
    """Wrap the plan's steps with wall-clock timers (no profiler overhead); returns the totals,
    filled in as the plan runs. The target read includes building its ObservedState; compare
    includes the target read, the state store's reads and the mapping."""
    from provisioner import cli, pipeline
    from provisioner.targets.ad import ActiveDirectory

    phases: dict[str, float] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, wrapper)

    # Insertion order is the order printed: each step before the steps it contains finish.
    for label in LABELS:
        phases[label] = 0.0
    timed(cli, "prepare_config", "prepare (config, mappings)")
    timed(cli, "_read", "source: download + parse")
    timed(cli, "compare", "compare (all below)")
    timed(ActiveDirectory, "read", "  target read + ObservedState")
    timed(pipeline, "desired_in_directory", "  mapping (build_desired, names, checks)")
    timed(cli, "plan_of", "plan (diff, lifecycle, policy)")
    timed(cli, "render_plan", "rendering")
    return phases


def child(mode: str, config: Path, profile: Path | None) -> None:
    """Run one measure in this fresh process; print its time, result and VmHWM as JSON."""
    from provisioner.cli import main

    phases = time_phases() if mode == "plan" and profile is None else {}

    quiet = io.StringIO()
    run: Callable[[], object]
    if mode == "plan":
        run = lambda: main(["plan", "--config", str(config)])  # noqa: E731
    elif mode == "fetch":
        run = lambda: main(["fetch", "--config", str(config)])  # noqa: E731
    else:
        run = lambda: bare_read(config)  # noqa: E731
    stdout = sys.stdout
    sys.stdout = quiet  # the plan's text is not what is measured here, only its making
    try:
        started = time.perf_counter()
        if profile:
            profiler = cProfile.Profile()
            result = profiler.runcall(run)
            profiler.dump_stats(profile)
        else:
            result = run()
        elapsed = time.perf_counter() - started
    finally:
        sys.stdout = stdout
    peak = peak_rss_kib() / 1024
    print(json.dumps({"seconds": elapsed, "result": result, "peak_mb": peak, "phases": phases}))


def in_child(mode: str, config: Path, profile: Path | None = None) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.bench_nightly", "--child", mode, "--config", str(config)]
    if profile:
        args += ["--profile", str(profile)]
    done = subprocess.run(
        args, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=10_000)
    parser.add_argument("--profile", type=Path, help="also profile the no-op plan into FILE")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the DC's address (another than 127.0.0.1, in a private network namespace, does "
        "not wait for a test run's DC: see docs/benchmarks.md)",
    )
    parser.add_argument("--child", choices=["plan", "fetch", "read"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.config, args.profile)
        return

    from tests.fakes.informat_server import InformatServer
    from tests.fakes.samba import SambaDC
    from tests.fakes.synthetic import generate

    started = time.perf_counter()
    data = generate(args.pupils, instelnrs=("030569", "030577"), schooljaar="2025-26", seed=1)
    print(f"generated {args.pupils} pupils in {time.perf_counter() - started:.1f} s", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp,
        InformatServer(data, today=REFERENCE_DAY) as server,
        SambaDC(args.host) as dc,
    ):
        os.environ["TEST_INFORMAT_PASSWORD"] = "geheim"
        os.environ["TEST_AD_PASSWORD"] = dc.admin_password
        # A root of its own: provisioner's run lock is machine-wide per managed root.
        managed_root = f"OU=Nightly{os.getpid()}"
        config = write_config(Path(tmp), server.url, dc, managed_root)

        started = time.perf_counter()
        fill(config)
        print(f"first night (no passwords) applied in {time.perf_counter() - started:.0f} s")

        plan = in_child("plan", config)
        assert plan["result"] == 0, f"the second night's plan is not a no-op: exit {plan['result']}"
        fetch = in_child("fetch", config)
        read = in_child("read", config)
        floor = fetch["seconds"] + read["seconds"]
        print(f"\n{args.pupils} pupils, {read['result']} objects in {managed_root}\n")
        print("| measure | time |")
        print("|---|---|")
        print(f"| no-op `plan` | {plan['seconds']:.2f} s |")
        print(f"| `fetch` (download + parse) | {fetch['seconds']:.2f} s |")
        print(f"| bare ldap3 paged read of the managed root | {read['seconds']:.2f} s |")
        print(f"| floor: fetch + bare read | {floor:.2f} s |")
        print(f"| ratio plan / floor | {plan['seconds'] / floor:.2f} × (goal ≤ 1.5) |")
        print(f"| peak memory of the plan (VmHWM) | {plan['peak_mb']:.0f} MB |")
        print(
            f"| peak memory of fetch / bare read | {fetch['peak_mb']:.0f} / "
            f"{read['peak_mb']:.0f} MB |",
            flush=True,
        )
        print("\nthe no-op plan's steps (wall clock, same run):\n")
        for label, seconds in plan["phases"].items():
            print(f"- {label}: {seconds:.2f} s")
        if args.profile:
            profiled = in_child("plan", config, args.profile)
            print(f"\nno-op plan under cProfile: {profiled['seconds']:.2f} s")
            out = io.StringIO()
            pstats.Stats(str(args.profile), stream=out).sort_stats("cumulative").print_stats(45)
            print(out.getvalue())


if __name__ == "__main__":
    main()
