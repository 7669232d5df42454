"""Private files: mode 0600, never through a link, never half-written; private directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner.errors import ConfigError
from provisioner.files import (
    check_private_dir,
    create_private,
    open_private,
    private_dir,
    write_private,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_write_private_replaces_a_wide_file_with_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary left behind


def test_write_private_never_writes_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "plan.json"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        write_private(link, "attack")
    assert victim.read_text() == "keep me"


def test_create_private_refuses_anything_already_there(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    (tmp_path / "sheet.csv").symlink_to(tmp_path / "target")
    with pytest.raises(FileExistsError):
        create_private(tmp_path / "sheet.csv")
    fd = create_private(tmp_path / "new.csv")
    os.close(fd)
    assert mode(tmp_path / "new.csv") == 0o600


def test_open_private_tightens_an_older_wide_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_text("")
    path.chmod(0o644)
    os.close(open_private(path))
    assert mode(path) == 0o600


def test_private_dir_is_made_0700_and_a_shared_one_refused(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "a" / "sheets")
    assert mode(made) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match=r"writable by others.*chmod 700"):
        check_private_dir(shared)
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_private_dir(link)


def test_on_windows_only_the_link_is_checked(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    check_private_dir(shared, windows=True)  # access lists, not modes: nothing to compare
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_private_dir(link, windows=True)


def test_a_file_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    """`plan --report /no/such/folder/x.html` was a traceback; it is one line that says what to
    check, and nothing is left behind."""
    with pytest.raises(ConfigError) as caught:
        write_private(tmp_path / "missing" / "report.html", "x")
    assert str(caught.value).startswith(
        f"cannot write {tmp_path / 'missing' / 'report.html'}: No such file or directory; check "
        f"that the folder {tmp_path / 'missing'} exists"
    )
    # Replacing fails (here: a folder of that name; on Windows also a file another program has
    # open): the temporary file is removed again.
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match=r"cannot write .*taken: Is a directory"):
        write_private(tmp_path / "taken", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
