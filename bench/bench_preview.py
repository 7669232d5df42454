"""Benchmark: a preview (``plan`` without a target) of a GO!-sized scholengroep, time and memory.

    python -m bench.bench_preview --pupils 400000 [--growth-from 50000] [--profile FILE]

In one run, per size:

1. a synthetic scholengroep (N pupils, N/10 staff: the generator's ratio) split over one
   instellingsnummer per ~4,000 pupils, served by the project's Informat server on 127.0.0.1. The
   server keeps only the data sets the default mappings read (the others are never asked for; at
   400,000 pupils they would hold several GB in this process for nothing);
2. in a fresh child process each, so the server's memory and GIL are not counted:

   - the preview: ``provisioner.cli.main(["plan", "--config", …, "--json"])`` with no target in
     the configuration, its output written to a file (what ``plan --json > preview.json`` does);
   - ``fetch``: ``main(["fetch", "--config", …])``, the source's download + parse alone;

   each timed (wall clock) with its peak memory (VmHWM of the child) and the largest sum of its
   parse workers' resident memory (sampled every 50 ms: the reader parses in worker processes).
   The preview's steps are timed too, each with the process's resident memory and peak after it.

With ``--growth-from M`` the same is measured for M pupils first, and the growth of the preview's
time and peak from M to N is set against linear. With ``--profile FILE`` the preview runs once
more under cProfile (stats saved to FILE, the top entries by cumulative time printed).
Goal (issue 17): 400,000 pupils previewed in < 2 minutes and < 4 GB; growth ≤ 1.2 × linear.
"""

from __future__ import annotations

import argparse
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
from typing import TYPE_CHECKING, Any

from bench.bench_informat import ChildrenMemory, peak_rss_kib, run_measured
from tests.conftest import REFERENCE_DAY
from tests.scenarios import config_head

if TYPE_CHECKING:
    from tests.fakes.synthetic import SyntheticData

ROOT = Path(__file__).resolve().parent.parent
PUPILS_PER_INSTELNR = 4_000
ANSWER_CACHE_BYTES = 4 * 1024**3


def instelnrs_for(pupils: int) -> list[str]:
    """One instellingsnummer per ~4,000 pupils (a GO! scholengroep has dozens of schools)."""
    count = max(2, round(pupils / PUPILS_PER_INSTELNR))
    return [f"{30000 + 8 * i:06d}" for i in range(count)]


def write_config(directory: Path, informat_url: str, instelnrs: list[str]) -> Path:
    """A configuration without a target: ``plan`` previews what the mappings would make."""
    path = directory / "provisioner.yaml"
    path.write_text(config_head(informat_url, ROOT / "mappings", instelnrs))
    return path


def memory_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process, in KiB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line[:5]] = int(line.split()[1])
    return found["VmRSS"], found["VmHWM"]


STEPS = (
    ("cli", "prepare_config", "prepare (configuration, mappings)"),
    ("cli", "_read", "source: download + parse"),
    ("pipeline", "persons_of", "mapping: the persons (anchors, attributes that use no name)"),
    ("pipeline", "compare", "mapping: names, the rest, groups, checks"),
    ("cli", "plan_of", "plan: diff, lifecycle, policy"),
    ("cli", "plan_to_json", "plan document (plan_to_json: every change's JSON data)"),
    ("cli", "plan_to_write", "plan document (plan_to_write: changes converted as written)"),
    ("cli", "write_indented", "JSON text written"),
)


def time_steps() -> dict[str, dict[str, float]]:
    """Wrap the preview's steps (as ``cli`` and the pipeline call them) with a wall-clock timer
    that also notes the resident memory and the peak after each; filled in as the preview runs.
    The persons are mapped inside compare's caller before compare: the two do not overlap."""
    from provisioner import cli, pipeline

    owners = {"cli": cli, "pipeline": pipeline}
    steps: dict[str, dict[str, float]] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                rss, hwm = memory_kib()
                step = steps.setdefault(label, {"seconds": 0.0})
                step["seconds"] += time.perf_counter() - started
                step["rss_mb"] = rss / 1024
                step["peak_mb"] = hwm / 1024

        setattr(owner, name, wrapper)

    for module, name, label in STEPS:
        owner = owners[module]
        if hasattr(owner, name):  # a version's cli calls plan_to_json or plan_to_write
            timed(owner, name, label)
    return steps


def child(mode: str, config: Path, output: Path, profile: Path | None) -> None:
    """Run one measure in this fresh process; print its time, exit code and VmHWM as JSON."""
    from provisioner.cli import main

    steps = time_steps() if mode == "plan" and profile is None else {}
    argv = ["plan", "--config", str(config), "--json"] if mode == "plan" else ["fetch"]
    if mode == "fetch":
        argv += ["--config", str(config)]
    run: Callable[[], int] = lambda: main(argv)  # noqa: E731
    with output.open("w", encoding="utf-8") as written, ChildrenMemory() as workers:
        # what `provisioner plan --json > preview.json` writes
        result, elapsed = run_measured(run, stdout=written, profile=profile)
    peak = peak_rss_kib() / 1024
    report = {
        "seconds": elapsed,
        "result": result,
        "peak_mb": peak,
        "workers_peak_mb": workers.peak_kib / 1024,
        "steps": steps,
        "bytes": output.stat().st_size,
    }
    print(json.dumps(report))


def in_child(mode: str, config: Path, output: Path, profile: Path | None = None) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.bench_preview", "--child", mode]
    args += ["--config", str(config), "--output", str(output)]
    if profile:
        args += ["--profile", str(profile)]
    done = subprocess.run(
        args, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def datasets_used() -> set[str]:
    from provisioner.mapping.engine import compile_mappings, fields_to_fetch
    from provisioner.mapping.spec import load_mappings
    from provisioner.sources.informat.operations import OPERATIONS

    return set(fields_to_fetch(compile_mappings(load_mappings(ROOT / "mappings"), OPERATIONS)))


def scholengroep(pupils: int, instelnrs: list[str]) -> SyntheticData:
    """The synthetic scholengroep of *pupils*, with only the data sets the default mappings read
    (the preview never asks for the others; at 400,000 pupils they would hold several GB)."""
    from tests.fakes.synthetic import generate

    data = generate(pupils, instelnrs=instelnrs, schooljaar="2025-26", seed=1)
    used = datasets_used()
    for name in [n for n in data.rows if n not in used]:
        del data.rows[name]
    return data


def measure(pupils: int, profile: Path | None) -> dict[str, Any]:
    """Generate and serve *pupils*, then the preview and fetch in children."""
    from tests.fakes.informat_server import InformatServer

    instelnrs = instelnrs_for(pupils)
    started = time.perf_counter()
    data = scholengroep(pupils, instelnrs)
    rows = sum(map(len, data.rows.values()))
    print(
        f"generated {pupils} pupils over {len(instelnrs)} instellingsnummers in "
        f"{time.perf_counter() - started:.0f} s ({rows} rows in {sorted(data.rows)})",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp,
        # Every answer kept once rendered (400,000 pupils: ~1.1 GB of XML, more than the
        # server's default cache): a real server's rendering is not the client's time, and a
        # thrashing cache made each measure wait for the server re-rendering on the same cores.
        InformatServer(data, today=REFERENCE_DAY, cache_bytes=ANSWER_CACHE_BYTES) as server,
    ):
        os.environ["TEST_INFORMAT_PASSWORD"] = "geheim"
        config = write_config(Path(tmp), server.url, instelnrs)
        output = Path(tmp) / "preview.json"
        in_child("fetch", config, Path(tmp) / "warm.txt")  # the server renders its items once
        preview = in_child("plan", config, output)
        fetch = in_child("fetch", config, Path(tmp) / "fetch.txt")
        cache = server.cache_info()
        print(
            f"server: {cache['bodies']} answers kept ({cache['bytes'] / 1e6:.0f} MB), "
            f"{cache['misses']} rendered, {cache['hits']} served from the cache",
            flush=True,
        )
        result: dict[str, Any] = {"pupils": pupils, "preview": preview, "fetch": fetch}
        if profile:
            result["profiled"] = in_child("plan", config, output, profile)
    del data
    return result


def print_size(result: dict[str, Any]) -> None:
    preview, fetch = result["preview"], result["fetch"]
    print(
        f"\n{result['pupils']} pupils: preview exit {preview['result']}, "
        f"{preview['bytes'] / 1e6:.1f} MB of JSON\n"
    )
    print("| measure | time | peak (VmHWM) |")
    print("|---|---:|---:|")
    print(
        f"| preview `plan --json` (no target) | {preview['seconds']:.1f} s | "
        f"{preview['peak_mb']:.0f} MB |"
    )
    print(f"| `fetch` | {fetch['seconds']:.1f} s | {fetch['peak_mb']:.0f} MB |")
    print(
        f"| the parse workers together (sampled), preview / fetch | | "
        f"{preview['workers_peak_mb']:.0f} / {fetch['workers_peak_mb']:.0f} MB |"
    )
    print(f"| preview / fetch | {preview['seconds'] / fetch['seconds']:.2f} × | |")
    print("\nthe preview's steps (wall clock; resident memory and peak after each):\n")
    print("| step | time | resident after | peak after |")
    print("|---|---:|---:|---:|")
    for label, step in preview["steps"].items():
        print(
            f"| {label} | {step['seconds']:.1f} s | {step['rss_mb']:.0f} MB | "
            f"{step['peak_mb']:.0f} MB |"
        )
    if "profiled" in result:
        print(f"\npreview under cProfile: {result['profiled']['seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=400_000)
    parser.add_argument("--growth-from", type=int, metavar="M", help="also measure M pupils")
    parser.add_argument("--profile", type=Path, help="also profile the preview into FILE")
    parser.add_argument("--child", choices=["plan", "fetch"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.config, args.output, args.profile)
        return

    results = []
    if args.growth_from:
        results.append(measure(args.growth_from, None))
        print_size(results[-1])
    results.append(measure(args.pupils, args.profile))
    print_size(results[-1])
    if args.growth_from:
        small, large = results
        size = large["pupils"] / small["pupils"]
        for what, key in (("time", "seconds"), ("peak", "peak_mb")):
            growth = large["preview"][key] / small["preview"][key]
            print(
                f"\ngrowth of the preview's {what} from {small['pupils']} to "
                f"{large['pupils']} pupils: {growth:.2f} × for {size:.1f} × the pupils = "
                f"{growth / size:.2f} × linear (goal ≤ 1.2)"
            )
    if args.profile:
        out = io.StringIO()
        pstats.Stats(str(args.profile), stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue())


if __name__ == "__main__":
    main()
