"""Sources: the systems people come from, each behind the protocol in :mod:`.base`.

This registry is the only place outside a source's own package that names the sources. The
configuration's ``source:`` section is looked up here by its key (``informat:``), and the pipeline
opens whichever source it names through :func:`open_source`. A new kind of source registers its
settings class and its opener with :func:`register_source`; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provisioner.sources.files.settings import FilesConfig
from provisioner.sources.informat.settings import InformatConfig
from provisioner.sources.informat_rest.settings import InformatRestConfig

if TYPE_CHECKING:
    from provisioner.sources.base import Source


@dataclass(frozen=True)
class SourceKind:
    settings: type
    """The dataclass its configuration section is read into."""
    open: Callable[..., Source]
    """Makes the source from its settings (and seams for tests, as keywords)."""


SOURCES: dict[str, SourceKind] = {}


def register_source(key: str, settings: type, open: Callable[..., Source]) -> None:
    SOURCES[key] = SourceKind(settings, open)


def open_source(kind: str, settings: Any, **seams: Any) -> Source:
    """The source of kind *kind*, made from its configured *settings*."""
    return SOURCES[kind].open(settings, **seams)


def _open_informat(settings: InformatConfig, **seams: Any) -> Source:
    # Imported only now: reading the configuration does not load the web-service client.
    from provisioner.sources.informat.source import InformatSource

    return InformatSource(settings, **seams)


register_source("informat", InformatConfig, _open_informat)


def _open_informat_rest(settings: InformatRestConfig, **seams: Any) -> Source:
    from provisioner.sources.informat_rest.source import InformatRestSource

    return InformatRestSource(settings, **seams)


register_source("informat_rest", InformatRestConfig, _open_informat_rest)


def _open_files(settings: FilesConfig, **seams: Any) -> Source:
    from provisioner.sources.composite import CompositeSource
    from provisioner.sources.files.source import FileSource

    sources = [FileSource(file, **seams) for file in settings.files]
    # Each file saves under its own file name: a snapshot keeps them side by side, with a
    # manifest (by which ``run`` expires it) even for one file.
    return CompositeSource([(s.name, s) for s in sources], subfolders=False)


register_source("files", FilesConfig, _open_files)


def open_sources(parts: list[tuple[str, Any]], **seams: Any) -> Source:
    """The configured sources as one: the source itself when there is one, else a
    :class:`~provisioner.sources.composite.CompositeSource` of them, each named by its key."""
    if len(parts) == 1:
        ((kind, settings),) = parts
        return open_source(kind, settings, **seams)
    from provisioner.sources.composite import CompositeSource

    return CompositeSource(
        [(kind, open_source(kind, settings, **seams)) for kind, settings in parts]
    )
