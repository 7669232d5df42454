"""Benchmark: the mapping's two parts at one size, CPU time and a digest of the outcome.

    python -m bench.bench_mapping_growth --pupils 50000 [--rounds 3] [--cache DIR] [--profile FILE]

The synthetic scholengroep of ``bench_preview`` (N pupils, N/10 staff, one instellingsnummer per
~4,000 pupils) is served once by the project's Informat server and read by the real reader; the
read is kept as a pickle in ``--cache`` (default: the temporary directory), so later runs of the
same size skip the generator and the HTTP read. Then, in this process, without HTTP:

- the preview's mapping, as ``plan`` without a target runs it: ``pipeline.persons_of`` (the
  persons, their anchors and the values that use no name) and ``pipeline.compare`` (the names,
  the rest of the attributes, the groups, the checks), each timed in CPU time
  (``time.process_time``: the two cores are shared, so wall time says more about the neighbours);
  best of ``--rounds``;
- a second night: ``Engine.desired`` given the names of the first run's outcome (nine accounts
  in ten still hold theirs, one in ten holds none but may get its own back, the rest were given
  before and are no one's now), so that the names kept, names given before and own names are
  searched too.

Each prints a digest (SHA-256) of every account's username, attributes and OU, every group with
its members and owners, every OU, every hold and the report: a change to the engine must leave
both digests as they were, at every size.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_preview import ANSWER_CACHE_BYTES, instelnrs_for, scholengroep, write_config
from provisioner import pipeline
from provisioner.model import DesiredState
from provisioner.pipeline import Prepared
from provisioner.sources.base import SourceRead


def read_once(pupils: int, cache: Path) -> tuple[list[str], SourceRead]:
    """The synthetic source of *pupils* as the real reader reads it, kept in *cache*."""
    path = cache / f"mapping-growth-{pupils}.pickle"
    instelnrs = instelnrs_for(pupils)
    if not path.exists():
        from tests.conftest import REFERENCE_DAY
        from tests.fakes.informat_server import InformatServer

        data = scholengroep(pupils, instelnrs)
        with (
            tempfile.TemporaryDirectory() as tmp,
            InformatServer(data, today=REFERENCE_DAY, cache_bytes=ANSWER_CACHE_BYTES) as server,
        ):
            os.environ["TEST_INFORMAT_PASSWORD"] = "geheim"
            read = pipeline.read_for_mappings(
                pipeline.prepare(write_config(Path(tmp), server.url, instelnrs))
            )
        del data
        with path.open("wb") as kept:
            pickle.dump({"read": read}, kept, protocol=pickle.HIGHEST_PROTOCOL)
    gc.disable()  # millions of small objects, no cycles
    try:
        with path.open("rb") as kept:
            return instelnrs, pickle.load(kept)["read"]  # our own file
    finally:
        gc.enable()


def digest(state: DesiredState) -> str:
    lines = [
        repr(
            (
                anchor,
                a.kind,
                a.username,
                a.ou,
                a.school,
                a.anchor_was,
                a.unique,
                sorted((k, v.value, v.why) for k, v in a.attributes.items()),
            )
        )
        for anchor, a in sorted(state.accounts.items())
    ]
    lines += [
        repr(
            (
                key,
                g.kind,
                g.ou,
                sorted((k, v.value) for k, v in g.attributes.items()),
                sorted(g.members),
                sorted(g.owners),
            )
        )
        for key, g in sorted(state.groups.items())
    ]
    report = state.report
    lines += [repr(sorted(state.ous)), *map(repr, state.held), repr(state.unknown_rows)]
    lines.append(repr((report.errors, report.warnings, report.collisions, report.names)))
    lines.append(repr((report.duplicates, report.persons)))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def preview(
    prepared: Prepared, read: SourceRead, profile: cProfile.Profile | None = None
) -> tuple[float, float, DesiredState]:
    """(CPU seconds of persons_of, of compare, the desired state)."""
    gc.collect()
    started = time.process_time()
    if profile:
        profile.enable()
    persons = pipeline.persons_of(prepared, read)
    middle = time.process_time()
    comparison = pipeline.compare(prepared, read, None, persons=persons)
    if profile:
        profile.disable()
    return middle - started, time.process_time() - middle, comparison.desired


def names_after(state: DesiredState) -> dict[str, Any]:
    """The names in use a night after *state*: see the module's docstring."""
    existing: dict[str, str] = {}
    held_values: dict[str, dict[str, str]] = {}
    own: dict[str, list[str]] = {}
    issued: set[str] = set()
    for position, (anchor, account) in enumerate(sorted(state.accounts.items())):
        values = {u: account.attributes[u].value for u in account.unique}
        issued.update([account.username, *values.values()])
        if position % 10 == 3:
            continue  # gone from the directory: its names given before, no one's now
        if position % 10 == 7:
            own[anchor] = [account.username, *values.values()]
            continue
        existing[anchor] = account.username
        held_values[anchor] = values
    return {"existing": existing, "held_values": held_values, "own": own, "issued": issued}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--profile", type=Path, help="profile one more preview into FILE")
    args = parser.parse_args()

    instelnrs, read = read_once(args.pupils, args.cache)
    os.environ["TEST_INFORMAT_PASSWORD"] = "geheim"
    with tempfile.TemporaryDirectory() as tmp:  # the source is never asked: nothing listens
        prepared = pipeline.prepare(write_config(Path(tmp), "http://127.0.0.77:9/", instelnrs))
    times = []
    for _round in range(args.rounds):
        persons, compare, state = preview(prepared, read)
        times.append((persons, compare))
        print(
            f"preview: persons_of {persons:.2f} s, compare {compare:.2f} s CPU; "
            f"{len(state.accounts)} accounts, {len(state.groups)} groups, "
            f"{len(state.held)} held; digest {digest(state)}",
            flush=True,
        )
    best = min(times, key=sum)
    print(f"best of {args.rounds}: {best[0]:.2f} + {best[1]:.2f} = {sum(best):.2f} s CPU")
    names = names_after(state)
    del state
    gc.collect()
    engine = pipeline.persons_of(prepared, read)
    started = time.process_time()
    night = engine.desired(**names)
    print(
        f"second night: Engine.desired {time.process_time() - started:.2f} s CPU; "
        f"{len(night.report.names)} name changes, {len(night.report.collisions)} collisions; "
        f"digest {digest(night)}"
    )
    if args.profile:
        profile = cProfile.Profile()
        preview(prepared, read, profile)
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
