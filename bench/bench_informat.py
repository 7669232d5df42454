"""Benchmark: the Informat reader against a bare lxml iterparse over the same bytes.

    python -m bench.bench_informat [--pupils 50000] [--rounds 3]

A synthetic school with N pupils (one instelnr) is served by the project's own Informat server on
127.0.0.1. The answer set is Lln + LlnExtra + Subgroepen + SmartschoolUsers. Measured, in one run:

- baseline: ``lxml.etree.iterparse`` over the downloaded bytes, visiting every element and clearing
  each item, building nothing (the usual streaming idiom);
- tag-filtered loop: the same with ``tag=`` so libxml2 hands Python only the items (a floor);
- parser: provisioner's parser over the same bytes, building every record;
- reader: ``read_source`` end to end over HTTP (download + parse), four calls in parallel;
- peak memory: a fresh process that runs the reader end to end and keeps every record (VmHWM).

Times are the best of ``--rounds`` rounds. Goal: parser ≤ 1.5 × baseline, peak ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import json
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import httpx
from lxml import etree

from provisioner.secret import Secret
from provisioner.sources.informat.operations import NAMESPACE, operation
from provisioner.sources.informat.parser import parse_answer
from provisioner.sources.informat.reader import read_source
from provisioner.sources.informat.settings import InformatConfig
from tests.fakes.informat_server import InformatServer
from tests.fakes.synthetic import generate

DATASETS = ["Lln", "LlnExtra", "Subgroepen", "SmartschoolUsers"]
INSTELNR = "030569"
DAY = dt.date(2026, 1, 15)
CHUNK = 64 * 1024


def config_for(url: str) -> InformatConfig:
    return InformatConfig(
        instelnrs=[INSTELNR],
        url=url,
        login="webservices@school.be",
        password=Secret("geheim", "bench"),
        schooljaar="2025-26",
        referentiedatum="15-01-2026",
    )


def best(rounds: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_iterparse(bodies: dict[str, bytes]) -> int:
    seen = 0
    for name, body in bodies.items():
        item = f"{{{NAMESPACE}}}{operation(name).item}"
        for _event, element in etree.iterparse(io.BytesIO(body), events=("end",)):
            if element.tag == item:
                seen += 1
                element.clear()
    return seen


def tag_filtered_iterparse(bodies: dict[str, bytes]) -> int:
    """The fastest bare loop: libxml2 picks the items, Python only clears them."""
    seen = 0
    for name, body in bodies.items():
        item = "{*}" + operation(name).item
        for _event, element in etree.iterparse(io.BytesIO(body), events=("end",), tag=item):
            seen += 1
            element.clear()
    return seen


def our_parser(bodies: dict[str, bytes]) -> int:
    total = 0
    for name, body in bodies.items():
        chunks = (body[i : i + CHUNK] for i in range(0, len(body), CHUNK))
        total += len(parse_answer(chunks, operation(name), name))
    return total


def peak_memory_child(url: str) -> None:
    """Run in a fresh process: read everything, keep it, report peak RSS and record count."""
    data = read_source(config_for(url), [operation(n) for n in DATASETS], today=DAY)
    records = sum(len(data.records(n)) for n in DATASETS)
    print(json.dumps({"records": records, "peak_mb": round(peak_rss_kib() / 1024, 1)}))


def run_measured(
    run: Callable[[], Any], *, stdout: TextIO, profile: Path | None = None
) -> tuple[Any, float]:
    """*run* with ``sys.stdout`` sent to *stdout*: what it returned and its wall-clock seconds;
    with *profile*, under cProfile, its stats saved there."""
    saved = sys.stdout
    sys.stdout = stdout
    try:
        started = time.perf_counter()
        if profile:
            profiler = cProfile.Profile()
            result = profiler.runcall(run)
            profiler.dump_stats(profile)
        else:
            result = run()
        return result, time.perf_counter() - started
    finally:
        sys.stdout = saved


def peak_rss_kib() -> int:
    """Peak resident memory of this process. Linux's ru_maxrss survives fork+exec and would report
    the parent's peak (the server with its data); VmHWM belongs to this process image alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class ChildrenMemory:
    """The largest sum of the resident memory of this process's children (the reader's parse
    workers), sampled every *interval* seconds while in a ``with`` block. Their own peaks are
    not known to this process (ru_maxrss of children survives fork+exec too), so they are
    sampled: a peak between two samples is missed."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildrenMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kib = max(self.peak_kib, sum(map(_rss_kib, _children())))


def _children() -> list[str]:
    pids = []
    for tasks in Path("/proc/self/task").iterdir():
        try:
            pids += (tasks / "children").read_text().split()
        except OSError:
            continue
    return pids


def _rss_kib(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass  # ended between the two reads
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child)
        return

    started = time.perf_counter()
    data = generate(args.pupils, instelnrs=[INSTELNR], schooljaar="2025-26", seed=1)
    print(f"generated {args.pupils} pupils in {time.perf_counter() - started:.1f} s")
    with InformatServer(data, today=DAY) as server:
        params = dict(
            login="webservices@school.be",
            paswoord="geheim",
            schooljaar="2025-26",
            instelnr=INSTELNR,
            referentiedatum="15-01-2026",
            hoofdstructuur="",
            smartschoolplatform="",
            discimusVestigingsnr="",
        )
        bodies = {}
        for name in DATASETS:
            wanted = {k: v for k, v in params.items() if k in operation(name).params}
            response = httpx.get(f"{server.url}/{name}", params=wanted, timeout=600)
            response.raise_for_status()
            bodies[name] = response.content
        size_mb = sum(map(len, bodies.values())) / 1e6
        items = bare_iterparse(bodies)
        print(f"answer set: {size_mb:.1f} MB, {items} items ({', '.join(DATASETS)})")

        baseline = best(args.rounds, lambda: bare_iterparse(bodies))
        filtered = best(args.rounds, lambda: tag_filtered_iterparse(bodies))
        ours = best(args.rounds, lambda: our_parser(bodies))
        assert our_parser(bodies) == items
        config = config_for(server.url)
        ops = [operation(n) for n in DATASETS]
        reader = best(args.rounds, lambda: read_source(config, ops, today=DAY))

        child = subprocess.run(
            [sys.executable, "-m", "bench.bench_informat", "--child", server.url],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        memory = json.loads(child.stdout)

    print(f"bare lxml iterparse : {baseline:6.2f} s")
    print(f"tag-filtered loop   : {filtered:6.2f} s  (builds nothing either)")
    print(f"provisioner parser  : {ours:6.2f} s  = {ours / baseline:.2f} x baseline (goal <= 1.5)")
    print(f"read_source via HTTP: {reader:6.2f} s  = {reader / baseline:.2f} x baseline")
    print(f"parser against the tag-filtered loop: {ours / filtered:.2f} x")
    print(
        f"peak memory, reader keeping all {memory['records']} records: "
        f"{memory['peak_mb']:.0f} MB (goal <= 500)"
    )


if __name__ == "__main__":
    main()
