"""One run at a time: real operating-system locks, contended by real processes."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli import main
from provisioner.config import load_config
from provisioner.errors import ConfigError
from provisioner.lock import (
    ANNOUNCE_AFTER,
    POLL_SECONDS,
    WINDOWS_LOCK_OFFSET,
    LockBusy,
    LockFile,
    MsvcrtLocker,
    RunLock,
    describe_holder,
    holder_details,
    lock_files,
    normalise_dn,
    run_lock,
)

ROOT = Path(__file__).resolve().parent.parent

# A separate process that takes the locks of a configuration (as a writing command does), says
# so on stdout and then holds them until it is killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from provisioner.config import load_config
    from provisioner.lock import run_lock
    with run_lock(load_config(sys.argv[1]), "provisioner apply --config " + sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
    """
)

SOURCE = """\
source:
  informat:
    url: https://127.0.0.1:9/wsInformat.asmx
    login: webservices@school.be
    password: ${TEST_INFORMAT_PASSWORD}
    schooljaar: 2025-26
    instelnrs: ['030569']
mappings: mappings
"""


def ad_target(
    url: str = "ldaps://127.0.0.1:1",
    root: str = "OU=Provisioned",
    base_dn: str = "DC=school,DC=be",
    extra: str = "",
) -> str:
    return (
        "target:\n  ad:\n"
        f"    url: {url}\n"
        "    bind_user: SCHOOL\\provisioner\n"
        "    password: ${TEST_AD_PASSWORD}\n"
        f"    base_dn: {base_dn}\n"
        f"    managed_root: {root}\n" + extra
    )


def entra_target(domains: str, tenant: str = "school.onmicrosoft.com") -> str:
    return (
        "target:\n  entra:\n"
        f"    tenant_id: {tenant}\n"
        "    client_id: 6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f\n"
        "    client_secret: ${TEST_AD_PASSWORD}\n"
        f"    domains: [{domains}]\n"
    )


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A configuration in its own folder (own state store) sharing one lock folder."""
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", "geheim")
    locks = tmp_path / "locks"

    def write(name: str, target: str, extra: str = "") -> Path:
        folder = tmp_path / name
        (folder / "mappings").mkdir(parents=True)
        path = folder / "provisioner.yaml"
        path.write_text(
            SOURCE + "state: state.db\n" + f"lock:\n  directory: {locks}\n{extra}" + target
        )
        return path

    return write


def take(config: Path, **seams: Any) -> None:
    """Take and release the locks of *config*, as a writing command would."""
    with run_lock(load_config(config), "provisioner apply", **seams):
        pass


@pytest.fixture
def holder() -> Iterator:
    """Start a process holding the locks of a configuration; killed (SIGKILL) at the end."""
    started: list[subprocess.Popen] = []

    def start(config: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_second_run_is_refused_naming_the_holder_and_the_lock_dies_with_it(write_config, holder):
    config = write_config("a", ad_target())
    process = holder(config)
    with pytest.raises(LockBusy) as refused:
        take(config)
    message = str(refused.value)
    assert f"another run (pid {process.pid}, `provisioner apply --config {config}`" in message
    assert "started at 20" in message and "it is still running" in message
    assert "the state store" in message  # the first lock in the order, the one it waited on

    # Killed without any chance to clean up: the operating system drops the lock.
    process.send_signal(signal.SIGKILL)
    process.wait()
    with run_lock(load_config(config), "provisioner apply") as held:
        assert held is not None and len(held.files) == 2
        details = held.files[0].path.read_text()
        assert f'"pid": {os.getpid()}' in details
    assert held.files[0].path.read_text() == ""  # a finished run leaves no details behind


def test_cli_apply_exits_1_with_the_message_and_touches_nothing(write_config, holder, capsys):
    config = write_config("a", ad_target())
    process = holder(config)
    # The target is a closed port: had the lock not stopped the run, it would fail differently.
    assert main(["apply", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"error: another run (pid {process.pid}, `provisioner apply" in err
    assert "wait for it or stop it" in err
    assert not (config.parent / "state.db").exists()
    assert main(["password", "reset", "--config", str(config), "someone"]) == 1
    assert f"pid {process.pid}" in capsys.readouterr().err
    # A plan with a target reads what an apply writes: it waits for the apply, too.
    assert main(["plan", "--config", str(config)]) == 1
    assert f"pid {process.pid}" in capsys.readouterr().err


def test_plan_without_a_target_takes_no_lock(write_config):
    config = write_config("a", "")
    assert lock_files(load_config(config)) == []


def test_two_configurations_of_one_directory_collide(write_config, holder):
    """Different state stores, another URL (port, start TLS), the DN spelled otherwise: one
    directory. The run that cannot get the directory's lock lets go of the state store's."""
    first = write_config("a", ad_target())
    second = write_config(
        "b",
        ad_target(
            "ldap://127.0.0.1:389", "ou=provisioned", "dc=School, dc=BE", "    start_tls: true\n"
        ),
    )
    process = holder(first)
    with pytest.raises(LockBusy) as refused:
        take(second)
    assert f"pid {process.pid}" in str(refused.value)
    assert "holds the lock on Active Directory below ou=provisioned,dc=School, dc=BE" in str(
        refused.value
    )
    state_lock = LockFile(second.parent / "state.db.lock", "the state store")
    with RunLock([state_lock], command="x"):
        pass


def test_other_directories_do_not_collide(write_config, holder):
    holder(write_config("a", ad_target(root="OU=School1")))
    with run_lock(load_config(write_config("b", ad_target(root="OU=School2"))), "x") as held:
        assert held is not None
    holder(write_config("c", entra_target("leerling.school.be, school.be")))
    other_tenant = entra_target("andere.be", tenant="andere.onmicrosoft.com")
    with run_lock(load_config(write_config("d", other_tenant)), "x") as held:
        assert held is not None


def test_entra_configurations_sharing_one_domain_collide(write_config, holder):
    """The tenant spelled otherwise (its GUID), one domain in common: still one directory."""
    holder(write_config("a", entra_target("leerling.school.be, school.be")))
    other = write_config(
        "b", entra_target("School.be", tenant="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    )
    with pytest.raises(LockBusy, match=r"holds the lock on Entra ID accounts @school\.be"):
        take(other)
    # Other domains of the same tenant: the same groups (the prefix marks them), one lock.
    same_groups = write_config("c", entra_target("andere.be"))
    with pytest.raises(LockBusy, match=r"holds the lock on Entra ID groups prov-… of tenant"):
        take(same_groups)


def test_a_waiting_run_polls_until_the_holder_ends(tmp_path, holder, write_config):
    config = write_config("a", ad_target())
    process = holder(config)
    loaded = load_config(config)
    loaded.lock.wait = 30
    now = [100.0]
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds
        if len(naps) == 3:  # the first run ends while the second waits
            process.kill()
            process.wait()

    with run_lock(loaded, "x", clock=lambda: now[0], sleep=sleep) as held:
        assert held is not None
    assert naps == [POLL_SECONDS] * 3


def test_a_waiting_run_gives_up_after_the_configured_time(write_config, holder):
    config = write_config("a", ad_target(), extra="  wait: 1.5\n")
    holder(config)
    now = [0.0]
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    with pytest.raises(LockBusy, match=r"\(waited 1.5 s\); it is still running"):
        take(config, clock=lambda: now[0], sleep=sleep)
    assert sum(naps) == pytest.approx(1.5) and max(naps) <= POLL_SECONDS


def test_a_run_that_meets_a_holder_in_its_first_split_second_still_names_it(write_config):
    """The holder writes its details just after taking the lock: a run that comes in between
    gives them a moment instead of refusing with a message that names nobody."""
    import fcntl

    config = write_config("a", ad_target())
    first = lock_files(load_config(config))[0]
    fd = os.open(first.path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # taken, details not written yet
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        os.write(fd, holder_details("provisioner apply --config other.yaml"))

    try:
        with pytest.raises(LockBusy, match=rf"another run \(pid {os.getpid()}, `provisioner apply"):
            take(config, clock=lambda: now[0], sleep=sleep)
        assert 0 < now[0] < ANNOUNCE_AFTER
    finally:
        os.close(fd)


def test_lock_settings_are_checked(write_config):
    config = write_config("a", ad_target(), extra="  wait: -5\n")
    with pytest.raises(ConfigError, match=r"provisioner.yaml:\d+: lock.wait: must be 0 or more"):
        load_config(config)


def test_the_lock_folder_is_private_and_links_are_refused(write_config, tmp_path):
    config = write_config("a", ad_target())
    take(config)
    locks = tmp_path / "locks"
    assert stat.S_IMODE(locks.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in locks.iterdir())

    locks.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        take(config)
    locks.chmod(0o700)

    state_lock = config.parent / "state.db.lock"
    state_lock.unlink()
    state_lock.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="symbolic link"):
        take(config)
    assert not (tmp_path / "elsewhere").exists()


def test_keys_ignore_spelling_of_a_dn():
    assert normalise_dn("OU=Leerlingen, DC=School ,DC=be") == "ou=leerlingen,dc=school,dc=be"
    assert normalise_dn(r"OU=A\, B,DC=be") == r"ou=a\, b,dc=be"


def test_holder_details_not_yet_written():
    assert describe_holder(b"") == "its details are not written yet"
    assert describe_holder(
        b'{"pid": 7, "command": "c", "started": "2026-12-01T02:00:03+01:00"}'
    ) == ("pid 7, `c`, started at 2026-12-01 02:00:03")


class FakeMsvcrt:
    """msvcrt.locking as Windows does it: a byte range locked by one open file refuses every
    other file descriptor (EACCES with LK_NBLCK); shared by the fakes of 'both processes'."""

    LK_UNLCK, LK_LOCK, LK_NBLCK = 0, 1, 2

    def __init__(self, ranges: dict) -> None:
        self.ranges = ranges
        self.calls: list[tuple[int, int, int]] = []

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        info = os.fstat(fd)
        position = os.lseek(fd, 0, os.SEEK_CUR)
        self.calls.append((mode, position, nbytes))
        key = (info.st_dev, info.st_ino, position, nbytes)
        if mode == self.LK_NBLCK:
            if key in self.ranges:
                raise OSError(errno.EACCES, "Permission denied")
            self.ranges[key] = fd
        elif mode == self.LK_UNLCK:
            if self.ranges.get(key) != fd:
                raise OSError(errno.EACCES, "Permission denied")
            del self.ranges[key]
        else:
            raise AssertionError(f"unexpected mode {mode}: a blocking lock would hang the run")


def test_the_windows_branch_with_a_faked_msvcrt(tmp_path):
    ranges: dict = {}
    first, second = FakeMsvcrt(ranges), FakeMsvcrt(ranges)
    files = [LockFile(tmp_path / "state.db.lock", "the state store")]
    with RunLock(files, command="provisioner apply", locker=MsvcrtLocker(first)):
        assert first.calls == [(FakeMsvcrt.LK_NBLCK, WINDOWS_LOCK_OFFSET, 1)]
        # The holder's details lie outside the locked byte, so the second run can read them.
        with (
            pytest.raises(LockBusy, match=rf"another run \(pid {os.getpid()}, `provisioner apply`"),
            RunLock(files, command="x", locker=MsvcrtLocker(second)),
        ):
            pass
    assert first.calls[-1] == (FakeMsvcrt.LK_UNLCK, WINDOWS_LOCK_OFFSET, 1)
    assert ranges == {}
    with RunLock(files, command="x", locker=MsvcrtLocker(second)):
        assert len(ranges) == 1


class NoLocks:
    """A file system without locks (some network shares answer ENOLCK)."""

    def try_lock(self, fd: int) -> bool:
        raise OSError(errno.ENOLCK, "No locks available")

    def unlock(self, fd: int) -> None:
        raise AssertionError("never locked")


def test_a_file_system_without_locks_is_a_clear_error(tmp_path):
    files = [LockFile(tmp_path / "state.db.lock", "the state store")]
    with pytest.raises(ConfigError, match="No locks available; the folder's file system may not"):
        RunLock(files, command="x", locker=NoLocks()).acquire()
