"""Informat's web service (wsInformat.asmx) behind the :class:`~provisioner.sources.base.Source`
protocol: the operations table as data sets, the reader's answers as neutral rows, and Informat's
own rule for an untrustworthy answer (a school that answered with no rows) as a block."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from provisioner.sources.base import Block, DatasetInfo, Fields, Progress, SourceRead
from provisioner.sources.informat.operations import (
    DEFAULT_DATASETS,
    OPERATIONS,
    SEARCH_FIELDS,
    operation,
)
from provisioner.sources.informat.reader import read_source
from provisioner.sources.informat.settings import InformatConfig

EMPTY_ANSWER = "answered with no rows"
EMPTY_ANSWER_HINT = (
    "Informat answers that way when the web-service account has no rights on an instellingsnummer"
)

_DATASETS = {
    name: DatasetInfo(name, op.key, SEARCH_FIELDS.get(name, ())) for name, op in OPERATIONS.items()
}


class InformatSource:
    def __init__(
        self,
        config: InformatConfig,
        *,
        today: dt.date | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``today`` and ``sleep`` (the pause between retries) are seams for tests."""
        self.config = config
        self._today = today
        self._sleep = sleep

    def datasets(self) -> Mapping[str, DatasetInfo]:
        return _DATASETS

    def default_datasets(self) -> Sequence[str]:
        return self.config.datasets or DEFAULT_DATASETS

    def units(self) -> Sequence[str]:
        return self.config.instelnrs

    def describe(self) -> str:
        return f"Informat {self._origin()}"

    def _origin(self) -> str:
        if self.config.snapshot is not None:
            return f"snapshot {self.config.snapshot}"
        return str(self.config.url)

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
    ) -> SourceRead:
        data = read_source(
            self.config,
            [operation(name) for name in fields],
            fields=fields,
            save=save,
            today=self._today,
            progress=progress,
            sleep=self._sleep,
        )
        return SourceRead(
            rows=data.as_source_rows(),
            as_of=data.as_of,
            digest=data.source_hash(),
            counts=data.counts(),
            description=f"Informat {data.schooljaar} from {self._origin()}",
            blocks=[
                Block(dataset, instelnr, EMPTY_ANSWER, EMPTY_ANSWER_HINT)
                for dataset, instelnr in data.empty()
            ],
            problems=data.problems(),
        )
