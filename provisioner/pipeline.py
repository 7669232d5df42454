"""The stages wired together: configuration → mappings → source → desired state.

The commands use these steps in the same order; each step hands the next plain data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from provisioner.config import Config, load_config
from provisioner.errors import ConfigError
from provisioner.mapping.engine import (
    CompiledMappings,
    build_desired,
    compile_mappings,
    fields_to_fetch,
)
from provisioner.mapping.spec import Mappings, load_mappings
from provisioner.model import DesiredState, ObservedState
from provisioner.plan.diff import diff
from provisioner.plan.model import Plan, PlanHeader
from provisioner.plan.planfile import file_hash, now
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.sources.informat.reader import Progress, SourceData, read_source


@dataclass
class Prepared:
    config: Config
    mappings: Mappings
    compiled: CompiledMappings
    fields: dict[str, Collection[str] | None]
    """What the mappings read: per data set its fields (None: all)."""


def prepare(config_path: Path) -> Prepared:
    """Read the configuration and compile the mappings it names; no source is read yet."""
    config = load_config(config_path)
    if config.mappings is None:
        raise ConfigError(f"{config_path}: no mappings configured (mappings: DIR or FILE)")
    mappings = load_mappings(config.mappings)
    compiled = compile_mappings(mappings, OPERATIONS)
    return Prepared(config, mappings, compiled, fields_to_fetch(compiled))


def read_for_mappings(
    prepared: Prepared,
    *,
    extra_fields: Mapping[str, Collection[str]] | None = None,
    progress: Callable[[Progress], None] = lambda _p: None,
) -> SourceData:
    """Only the data sets and fields the mappings reference (plus *extra_fields*)."""
    fields: dict[str, Collection[str] | None] = dict(prepared.fields)
    for dataset, extra in (extra_fields or {}).items():
        if dataset in fields and fields[dataset] is not None:
            fields[dataset] = sorted({*fields[dataset], *extra})  # type: ignore[misc]
    datasets = [operation(name) for name in fields]
    return read_source(prepared.config.source.informat, datasets, fields=fields, progress=progress)


def desired_state(prepared: Prepared, data: SourceData) -> DesiredState:
    return build_desired(prepared.compiled, data.as_source_rows(), today=data.as_of)


PLAN_VALID_FOR = dt.timedelta(hours=12)
"""A saved plan older than this is refused by apply: the directory will have moved on."""

EMPTY_TARGET = "(no target configured: a first run against an empty directory; nothing is written)"


def make_plan(
    prepared: Prepared,
    data: SourceData,
    desired: DesiredState,
    observed: ObservedState,
    target: str,
) -> Plan:
    """The plan with its header: hashes of what it was made from, expiry, and blocks."""
    created = now()
    blocked = []
    if desired.report.errors:
        blocked.append(
            f"the mappings reported {len(desired.report.errors)} error(s) (run validate): a plan "
            "made from incomplete data could remove what it should keep"
        )
    header = PlanHeader(
        created=created.isoformat(),
        expires=(created + PLAN_VALID_FOR).isoformat(),
        config_hash=file_hash([prepared.config.path]),
        mappings_hash=file_hash(prepared.mappings.files),
        source_hash=data.source_hash(),
        target=target,
        source_as_of=data.as_of.isoformat(),
        blocked=blocked,
        warnings=list(desired.report.warnings),
    )
    return Plan(header, diff(desired, observed))
