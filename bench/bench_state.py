"""Benchmark: the state store's writes — anchors, issued names, account kinds, leaver clocks.

    python -m bench.bench_state [--rows 2000 20000] [--module PATH] [--dir DIR]

Each workload writes N rows into a fresh state store (a real file, so every commit reaches the disk)
and is timed alone:

- ``remember_anchors``, ``issue_names``, ``remember_kinds``: one call with N rows;
- ``issue_names`` once per name, as ``apply`` records each created account's username: first on its
  own, then inside one ``store.transaction()`` (the step);
- ``track_leavers``: N people gone, then the same N back;
- a whole step: all of the above inside one ``store.transaction()``.

``--module`` loads ``StateStore`` from another file, e.g. an older ``provisioner/state.py`` taken
from git, to measure before and after on the same machine. A store without ``transaction()`` runs
the "inside one transaction" rows without one (and says so).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DAY = dt.date(2026, 1, 15)


def load_store_class(module: Path | None) -> type:
    if module is None:
        from provisioner.state import StateStore

        return StateStore
    spec = importlib.util.spec_from_file_location("bench_state_module", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded.StateStore


def step(store: Any) -> contextlib.AbstractContextManager[Any]:
    transaction = getattr(store, "transaction", None)
    return transaction() if transaction is not None else contextlib.nullcontext()


def workloads(n: int) -> dict[str, Callable[[Any], None]]:
    anchors = [f"{i:07d}" for i in range(n)]
    pairs = [(a, f"guid-{a}") for a in anchors]
    names = [(a, f"user.{a}") for a in anchors]
    kinds = [(a, "pupils" if i % 10 else "staff", "030569") for i, a in enumerate(anchors)]

    def names_one_by_one(store: Any) -> None:
        for pair in names:
            store.issue_names([pair])

    def names_one_by_one_in_a_step(store: Any) -> None:
        with step(store):
            names_one_by_one(store)

    def leavers(store: Any) -> None:
        store.track_leavers(anchors, [], DAY)
        store.track_leavers([], anchors, DAY)

    def whole_step(store: Any) -> None:
        with step(store):
            store.remember_anchors("account", pairs)
            names_one_by_one(store)
            store.remember_kinds(kinds)
            store.track_leavers(anchors, [], DAY)

    return {
        "remember_anchors, one call": lambda store: store.remember_anchors("account", pairs),
        "issue_names, one call": lambda store: store.issue_names(names),
        "remember_kinds, one call": lambda store: store.remember_kinds(kinds),
        "issue_names, one call per name": names_one_by_one,
        "issue_names, one call per name, in one transaction()": names_one_by_one_in_a_step,
        "track_leavers: N gone, then N back": leavers,
        "a whole step in one transaction(): anchors, names one by one, kinds, leavers": whole_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--module", type=Path, help="a state.py to load StateStore from")
    parser.add_argument("--dir", type=Path, help="where the stores are made (default: temp dir)")
    args = parser.parse_args()

    store_class = load_store_class(args.module)
    print(f"StateStore from {args.module or 'provisioner.state'}")
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
    if not hasattr(store_class, "transaction"):
        print("(this store has no transaction(): those rows run without one)")
    for n in args.rows:
        for what, work in workloads(n).items():
            with (
                tempfile.TemporaryDirectory(dir=args.dir) as tmp,
                store_class(Path(tmp) / "state.db") as store,
            ):
                started = time.perf_counter()
                work(store)
                took = time.perf_counter() - started
            print(f"{n:>7,} rows  {took:9.3f} s  {n / took:>10,.0f} rows/s  {what}", flush=True)


if __name__ == "__main__":
    main()
