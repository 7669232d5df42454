"""A snapshot (``fetch --save DIR``) holds data about minors: every file private, never written
through a link, also when it replaces an older snapshot that was readable by everyone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner.errors import ConfigError
from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.reader import read_source
from tests.conftest import informat_config


def modes(directory: Path) -> dict[str, int]:
    return {
        str(p.relative_to(directory)): stat.S_IMODE(p.lstat().st_mode)
        for p in [directory, *directory.rglob("*")]
    }


def test_a_snapshot_replacing_a_wide_one_is_private_throughout(server, tmp_path):
    snapshot = tmp_path / "s"
    read_source(informat_config(server.url), [operation("Lln")], save=snapshot)
    for path in [snapshot, *snapshot.rglob("*")]:  # an older snapshot, copied without care
        path.chmod(0o755 if path.is_dir() else 0o644)
    read_source(informat_config(server.url), [operation("Lln")], save=snapshot)
    found = modes(snapshot)
    assert "manifest.json" in found and "Lln/030569.xml" in found
    assert {m for p, m in found.items() if (snapshot / p).is_dir()} == {0o700}
    assert {m for p, m in found.items() if (snapshot / p).is_file()} == {0o600}
    # Nothing left over beside it (the temporary directory was renamed into place).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_a_link_in_place_of_the_snapshot_directory_is_refused(server, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep me")
    os.symlink(elsewhere, tmp_path / "s")
    with pytest.raises(ConfigError, match="symbolic link"):
        read_source(informat_config(server.url), [operation("Lln")], save=tmp_path / "s")
    assert (elsewhere / "keep.txt").read_text() == "keep me"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
