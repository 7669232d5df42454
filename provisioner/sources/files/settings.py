"""The ``source.files`` section of provisioner.yaml: a list of files of extra persons."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from provisioner.sources.informat.params import normalise_instelnr
from provisioner.yamlnodes import Builder

KIND_DATASETS = {"staff": "Leerkrachten", "pupils": "Lln"}
"""The data set a file's rows join, by its kind: the one the default mappings of that account
kind read, with the person key ``p_persoon``."""
DATASET_KEY = "p_persoon"

_PREFIX = re.compile(r"[a-z][a-z0-9]{0,5}")


def _check_prefix(value: str) -> str:
    if not _PREFIX.fullmatch(value):
        raise ValueError(
            f"expected 1 to 6 lowercase letters or digits starting with a letter (like ext), "
            f"not {value!r}: Informat's person keys are digits, so a key starting with a letter "
            "can never be one of theirs"
        )
    return value


def _check_instelnr(value: str) -> str:
    return normalise_instelnr(value) if value else value


def _check_name(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise ValueError(f"expected letters, digits, '-', '_' or '.', not {value!r}")
    return value


@dataclass
class FileConfig:
    """One file of extra persons."""

    path: Path
    """A ``.csv`` or ``.yaml``/``.yml`` file; a relative path is read from the configuration
    file's folder. It is read on every night: a missing or unreadable file blocks the night."""
    kind: Literal["staff", "pupils"]
    prefix: str = field(metadata={"check": _check_prefix})
    """Every person key in the file starts with it (``ext17``): keys of different sources can
    then never be the same."""
    key: str = DATASET_KEY
    """The column that holds the person key; its values are given to the mappings as
    ``p_persoon`` (``{{ key }}``)."""
    instelnr: str = field(default="", metadata={"check": _check_instelnr})
    """The school of every row, for a file without an ``instelnr`` column."""
    name: str = field(default="", metadata={"check": _check_name})
    """What the mappings see as ``{{ source }}`` for this file's persons; by default the file's
    name without its extension."""

    def __post_init__(self) -> None:
        if self.path.suffix.lower() not in (".csv", ".yaml", ".yml"):
            raise ValueError(f"path: expected a .csv, .yaml or .yml file, not {self.path.name!r}")
        if not self.name:
            self.name = self.path.stem

    @property
    def dataset(self) -> str:
        return KIND_DATASETS[self.kind]


@dataclass
class FilesConfig:
    """The ``files:`` list: each file its own unit, none sharing a name or a key prefix."""

    files: list[FileConfig]

    @classmethod
    def from_yaml_node(cls, builder: Builder, node: yaml.Node, where: str) -> FilesConfig:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise builder.error(
                node, where, "expected a list of files: - {path: extra-staff.csv, kind: staff, …}"
            )
        files: list[FileConfig] = []
        for index, item in enumerate(node.value):
            here = f"{where}[{index}]"
            built: FileConfig = builder.build_dataclass(item, FileConfig, here)
            for earlier in files:
                if earlier.name == built.name:
                    raise builder.error(
                        item,
                        here,
                        f"two files are named {built.name!r}: give one a name of its own",
                    )
                if built.prefix.startswith(earlier.prefix) or earlier.prefix.startswith(
                    built.prefix
                ):
                    raise builder.error(
                        item,
                        f"{here}.prefix",
                        f"{built.prefix!r} and {earlier.prefix!r} (of {earlier.name}) could make "
                        "the same key: no prefix may begin another",
                    )
            files.append(built)
        return cls(files)
