"""provisioner.yaml → typed configuration.

The file is read into typed dataclasses by the generic builder in :mod:`provisioner.yamlnodes`:
every unknown key, wrong type or bad value is reported as ``FILE:LINE: path.to.key: what is
wrong``. Secrets are references (``${ENV_VAR}`` or ``file:PATH``), never literals, so a
configuration file can be shared and committed without leaking anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner.notify.settings import NotifyConfig
from provisioner.passwords import PasswordConfig
from provisioner.plan.lifecycle import LifecycleConfig
from provisioner.plan.policy import PolicyConfig
from provisioner.sources import SOURCES
from provisioner.targets.ad_settings import AdConfig
from provisioner.targets.entra_settings import EntraConfig
from provisioner.yamlnodes import Builder, existing, load_yaml


@dataclass
class SourceConfig:
    """The ``source:`` section: one key per source, each naming a registered kind of source
    (``informat:``, ``files:``) with that source's own settings under it. With several, their
    persons are read together (:class:`~provisioner.sources.composite.CompositeSource`)."""

    parts: list[tuple[str, Any]]
    """(kind, settings) in the order written."""

    @property
    def kind(self) -> str:
        """The first source's kind (the only one, in most configurations)."""
        return self.parts[0][0]

    @property
    def settings(self) -> Any:
        return self.parts[0][1]

    @classmethod
    def from_yaml_node(cls, builder: Builder, node: yaml.Node, where: str) -> SourceConfig:
        known = ", ".join(SOURCES)
        if not isinstance(node, yaml.MappingNode) or not node.value:
            raise builder.error(node, where, f"configure a source: {known}")
        parts: list[tuple[str, Any]] = []
        for key_node, value_node in node.value:
            key = str(key_node.value)
            kind = SOURCES.get(key)
            if kind is None:
                raise builder.error(key_node, f"{where}.{key}", f"unknown source (known: {known})")
            if any(key == seen for seen, _settings in parts):
                raise builder.error(key_node, f"{where}.{key}", "given twice")
            parts.append((key, builder.build(value_node, kind.settings, f"{where}.{key}")))
        return cls(parts)


@dataclass
class TargetConfig:
    ad: AdConfig | None = None
    entra: EntraConfig | None = None

    def __post_init__(self) -> None:
        if (self.ad is None) == (self.entra is None):
            raise ValueError("configure one target: ad or entra")


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


@dataclass
class LockConfig:
    """The ``lock:`` section: how runs that write keep out of each other's way
    (:mod:`provisioner.lock`)."""

    wait: float = field(default=0.0, metadata={"check": _not_negative})
    """Seconds a run waits for another run holding the lock before it stops (exit code 1)."""
    directory: Path | None = None
    """Where the per-directory lock files live; by default a private folder of this user
    (``~/.cache/provisioner/locks``, on Windows ``%LOCALAPPDATA%\\provisioner\\locks``). Runs
    under different user accounts do not see each other's locks here; the lock beside the state
    store still keeps them apart when they share a state store."""


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


@dataclass
class RunsConfig:
    """The ``runs:`` section: where ``provisioner run`` keeps each night, and for how long."""

    dir: Path | None = None
    """One folder per night (plan, report, log, results); default ``runs`` next to the state
    store."""
    keep_days: int = field(default=60, metadata={"check": _at_least_one})
    """Run folders older than this are removed by the next run: they hold pupils' data."""


@dataclass
class SnapshotsConfig:
    """The ``snapshots:`` section: where ``fetch --save`` keeps raw source answers when no
    folder is named, and for how long."""

    dir: Path | None = None
    """Default ``snapshots`` next to the state store (or the configuration file)."""
    keep_days: int = field(default=14, metadata={"check": _at_least_one})
    """Snapshots in ``dir`` older than this are removed by the next ``provisioner run``."""


@dataclass
class Config:
    source: SourceConfig
    mappings: Path | None = field(default=None, metadata={"check": existing})
    """A mapping file, or a directory whose ``*.yaml`` files together form the mappings."""
    target: TargetConfig | None = None
    """Where plans are applied; without one, ``plan`` previews a first run."""
    state: Path | None = None
    """The SQLite state store (anchors, issued names, run history); needed with a target."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Limits a plan must stay within, and when leaver actions wait."""
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    """When leavers are disabled, where their accounts go, and when they are deleted."""
    passwords: PasswordConfig = field(default_factory=PasswordConfig)
    """Initial passwords of new accounts and where their hand-out sheets go."""
    lock: LockConfig = field(default_factory=LockConfig)
    """How long a second run waits for the first, and where lock files live."""
    runs: RunsConfig = field(default_factory=RunsConfig)
    """Where ``provisioner run`` keeps each night, and for how long."""
    snapshots: SnapshotsConfig = field(default_factory=SnapshotsConfig)
    """Where ``fetch --save`` keeps raw answers by default, and for how long."""
    notify: NotifyConfig | None = None
    """Who hears about a night (webhook, e-mail), the heartbeat, and expiry warnings."""

    @property
    def sheets_dir(self) -> Path:
        if self.passwords.sheets is not None:
            return self.passwords.sheets
        return (self.state or self.path).parent / "password-sheets"

    @property
    def runs_dir(self) -> Path:
        return self.runs.dir or (self.state or self.path).parent / "runs"

    @property
    def snapshots_dir(self) -> Path:
        return self.snapshots.dir or (self.state or self.path).parent / "snapshots"

    def __post_init__(self) -> None:
        if self.target is not None and self.state is None:
            raise ValueError("a target needs a state store: add state: state.db")
        if self.target is not None and self.target.entra is not None and self.lifecycle.disabled_ou:
            raise ValueError(
                "lifecycle.disabled_ou: Entra ID has no OUs; disabled accounts stay where they are"
            )
        if self.notify is not None:
            self.notify.check_target(has_entra=self.target is not None and bool(self.target.entra))

    path: Path = field(default=Path("provisioner.yaml"), metadata={"internal": True})


def load_config(path: str | Path) -> Config:
    """Read and check a configuration file; every problem names the file and line."""
    path = Path(path)
    config = load_yaml(path, Config, "configuration")
    config.path = path
    return config
