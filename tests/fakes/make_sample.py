"""Regenerate the bundled sample snapshot: ``python -m tests.fakes.make_sample``.

It runs the project's own Informat server on synthetic data and saves what the real client reads
from it, so the sample is exactly what ``provisioner fetch --save`` writes.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from provisioner.secret import Secret
from provisioner.sources.informat.operations import OPERATIONS
from provisioner.sources.informat.reader import read_source
from provisioner.sources.informat.settings import InformatConfig
from tests.fakes.informat_server import InformatServer
from tests.fakes.synthetic import generate

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-snapshot"
INSTELNRS = ["030569", "030577"]
DAY = dt.date(2025, 10, 1)


def make_sample(target: Path = SAMPLE, pupils: int = 300) -> Path:
    data = generate(pupils, instelnrs=INSTELNRS, schooljaar="2025-26", seed=2025)
    with InformatServer(data, today=DAY) as server:
        config = InformatConfig(
            instelnrs=INSTELNRS,
            url=server.url,
            login="webservices@school.be",
            password=Secret("geheim", "sample"),
            schooljaar="2025-26",
            referentiedatum="01-10-2025",
        )
        read_source(config, list(OPERATIONS.values()), save=target, today=DAY)
    return target


if __name__ == "__main__":
    print(make_sample(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE))
