"""A throwaway Samba Active Directory domain controller for integration tests, and for developers.

The AD target speaks to Active Directory over LDAP; tests of it run against a real, AD-compatible
domain controller rather than a fake, because AD's behaviour (``unicodePwd`` rules,
``userAccountControl``, result codes, paging, tree delete) is exactly what a fake would get wrong.
This module follows ``shared/reference/active-directory-samba.md``:

1. provision a fresh domain (realm SCHOOL.TEST, NetBIOS domain SCHOOL, DC=school,DC=test) into one
   temporary directory: no DNS server, only the LDAP service, on one loopback address, no fsync;
2. relax the password policy offline, so tests can set short passwords and change them at once;
3. give Samba a certificate from a throwaway CA (:func:`tests.fakes.tls.make_test_ca`) whose
   subjectAltName holds the address, so clients verify it exactly as in production;
4. start ``samba`` in its own session and wait until an LDAPS bind with CA verification works;
5. stop it by the PID it was started with (never by process name) and delete the directory.

Nothing outside the directory is written. It needs root (provisioning chowns files, and Samba's
LDAP ports are 389/636, which it cannot move) and the Debian packages that
``scripts/install-samba`` installs. ldap3 is imported only when a DC is started, so importing this
module is cheap.

Run ``python -m tests.fakes.samba`` (as root) to get the same DC by hand until Ctrl-C; see
``docs/samba-dc.md``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from .tls import make_test_ca

if TYPE_CHECKING:
    from ldap3 import Connection, Server, Tls

REALM = "SCHOOL.TEST"
DOMAIN = "SCHOOL"
DNS_DOMAIN = "school.test"
BASE_DN = "DC=school,DC=test"
HOST_NAME = "DC1"
FQDN = f"{HOST_NAME}.{DNS_DOMAIN}"
ADMIN_PASSWORD = "Passw0rd!Admin"  # a fixed test-only credential of a throwaway DC
"""Provisioning checks the administrator password against the default (strict) policy."""

LDAP_PORT = 389
LDAPS_PORT = 636
GC_PORT = 3268
GC_SSL_PORT = 3269
PORTS = (LDAP_PORT, LDAPS_PORT, GC_PORT, GC_SSL_PORT)
"""Samba's LDAP listeners; it has no setting to move them, so they must be free on the address."""

PACKAGES = ("samba", "samba-dsdb-modules", "samba-vfs-modules", "samba-ad-provision", "openssl")
INSTALL_HINT = (
    "install the Samba AD DC packages as root: bash scripts/install-samba "
    f"(apt-get install --no-install-recommends {' '.join(PACKAGES)})"
)

# samba lives in /usr/sbin, which a non-login shell's PATH may lack.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

PROVISION_TIMEOUT = 180.0
"""Provisioning takes 5-9 s on two cores; a generous bound that still ends a hung run."""

READY_TIMEOUT = 60.0
"""Samba answers LDAPS about 1 s after starting (3 s when it has to generate keys)."""

DEFAULT_MAX_RUNTIME = 3 * 3600
"""Samba exits by itself after this many seconds: a safety net when nobody stops it."""

DEFAULT_LOCK_TIMEOUT = 600.0
"""How long :meth:`SambaDC.start` waits for another SambaDC on the same address to stop."""


class SambaUnavailable(RuntimeError):
    """This machine cannot run the DC: Samba's packages are missing or we are not root."""


class SambaError(RuntimeError):
    """The DC failed to provision, start or answer; the message carries the log's tail."""


def unavailable_reason() -> str | None:
    """Why a DC cannot be started here, with the install hint; None when it can."""
    problems: list[str] = []
    for tool in ("samba", "samba-tool", "openssl"):
        if shutil.which(tool, path=_SEARCH_PATH) is None:
            problems.append(f"the {tool} command is missing")
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is not None:
        # The commands alone do not prove the AD database and VFS modules are there; without them
        # provisioning fails halfway with obscure errors (see the reference, section 2).
        result = subprocess.run(
            [dpkg_query, "-W", "-f=${Package} ${db:Status-Status}\n", *PACKAGES],
            capture_output=True,
            text=True,
            check=False,
        )
        installed = {
            line.split()[0].split(":")[0]
            for line in result.stdout.splitlines()
            if line.endswith(" installed")
        }
        missing = [package for package in PACKAGES if package not in installed]
        if missing:
            problems.append(f"packages not installed: {' '.join(missing)}")
    if problems:
        return f"{'; '.join(problems)}; {INSTALL_HINT}"
    if os.geteuid() != 0:
        return (
            "a Samba AD DC needs root (provisioning chowns files, and LDAP listens on "
            "ports 389/636); run the tests as root"
        )
    return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text.splitlines()[-lines:])


def _session_members(session_id: int) -> list[int]:
    """PIDs in the given session: Samba's children, found without matching process names."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The command name in parentheses may hold spaces; the fields after the last ")" are
        # state, ppid, pgrp, session, ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session_id:
            members.append(int(entry.name))
    return members


class SambaDC:
    """One Samba AD DC on ``host`` (loopback), from a fresh domain, until :meth:`stop`.

    ::

        with SambaDC() as dc:
            conn = dc.connect()            # LDAPS, CA-verified, bound as SCHOOL\\Administrator
            conn.search(dc.base_dn, "(objectClass=user)")

    Use ``ldaps_url`` (or ``ldap_url`` plus StartTLS) with ``ca_file`` for any other client.
    """

    realm = REALM
    domain = DOMAIN
    dns_domain = DNS_DOMAIN
    base_dn = BASE_DN
    tls_name = FQDN
    """The DC's host name, in the certificate besides the IP address and localhost."""
    admin_user = f"{DOMAIN}\\Administrator"
    """The down-level logon name; ``admin_upn`` and ``admin_dn`` bind the same account."""
    admin_upn = f"Administrator@{DNS_DOMAIN}"
    admin_dn = f"CN=Administrator,CN=Users,{BASE_DN}"
    ldap_port = LDAP_PORT
    ldaps_port = LDAPS_PORT

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        admin_password: str = ADMIN_PASSWORD,
        max_runtime: int = DEFAULT_MAX_RUNTIME,
        process_model: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        keep: bool = False,
        quiet: bool = True,
    ) -> None:
        """``host`` must be an address assigned to an interface (Linux puts only 127.0.0.1 on
        ``lo``). ``process_model`` is Samba's ``--model``: None keeps the default (prefork: a
        master and four LDAP workers, as on a real DC); "single" runs one process, stops at
        once and is as fast for one client, but serialises concurrent connections.
        ``lock_timeout``: how long to wait while another SambaDC (another test session on this
        machine, or ``python -m tests.fakes.samba``) holds the address; 0 fails at once. ``keep``
        leaves the directory behind after :meth:`stop` for a post-mortem. ``quiet=False`` prints
        each step's duration on stderr."""
        self.host = host
        self.process_model = process_model
        self.lock_timeout = lock_timeout
        self.admin_password = admin_password
        self.max_runtime = max_runtime
        self.keep = keep
        self.quiet = quiet
        self.directory: Path | None = None
        self.timings: dict[str, float] = {}
        """Seconds per step (provision, password_policy, tls, start, stop), for reports."""
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    # -- connection details -----------------------------------------------------------------

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.ldaps_port}"

    @property
    def ldap_url(self) -> str:
        """Plain LDAP: use StartTLS before binding (AD refuses simple binds in the clear)."""
        return f"ldap://{self.host}:{self.ldap_port}"

    @property
    def ca_file(self) -> Path:
        """The throwaway CA that signed the DC's certificate: the only trust anchor to use."""
        return self._path("tls", "ca.pem")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_file(self) -> Path:
        """Samba's own output (``--debug-stdout``); the first place to look when it misbehaves."""
        return self._path("log", "samba.out")

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def details(self) -> dict[str, str]:
        """The connection details as environment-style names, as the CLI prints them."""
        return {
            "AD_LDAPS_URL": self.ldaps_url,
            "AD_LDAP_URL": self.ldap_url,
            "AD_CA_FILE": str(self.ca_file),
            "AD_TLS_NAME": self.tls_name,
            "AD_BASE_DN": self.base_dn,
            "AD_REALM": self.realm,
            "AD_DOMAIN": self.domain,
            "AD_ADMIN_USER": self.admin_user,
            "AD_ADMIN_UPN": self.admin_upn,
            "AD_ADMIN_DN": self.admin_dn,
            "AD_ADMIN_PASSWORD": self.admin_password,
        }

    # -- ldap3 helpers ----------------------------------------------------------------------

    def tls(self) -> Tls:
        """ldap3 TLS settings that verify the DC's certificate against :attr:`ca_file` only."""
        from ldap3 import Tls

        return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file))

    def server(self, *, use_ssl: bool = True) -> Server:
        """An ldap3 Server for LDAPS (636), or for plain LDAP (389) when StartTLS will follow."""
        from ldap3 import ALL, Server

        port = self.ldaps_port if use_ssl else self.ldap_port
        # get_info=ALL also reads the root DSE (server.info: naming contexts, controls).
        return Server(
            self.host,
            port=port,
            use_ssl=use_ssl,
            tls=self.tls(),
            get_info=ALL,
            connect_timeout=5,
        )

    def connect(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        starttls: bool = False,
        receive_timeout: float = 120,
        raise_exceptions: bool = False,
    ) -> Connection:
        """A bound ldap3 connection over verified TLS, as the administrator unless told.

        A failed bind raises ``LDAPBindError``. ``receive_timeout`` is explicit because ldap3
        2.9.1 otherwise keeps the connect timeout as the socket timeout of every later read,
        and a tree delete takes longer than that.
        """
        from ldap3 import AUTO_BIND_NO_TLS, AUTO_BIND_TLS_BEFORE_BIND, Connection

        return Connection(
            self.server(use_ssl=not starttls),
            user=user or self.admin_user,
            password=password if password is not None else self.admin_password,
            auto_bind=AUTO_BIND_TLS_BEFORE_BIND if starttls else AUTO_BIND_NO_TLS,
            receive_timeout=receive_timeout,
            raise_exceptions=raise_exceptions,
        )

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> SambaDC:
        """Provision, configure, start and wait for LDAPS; raises SambaUnavailable/SambaError."""
        if self._process is not None:
            raise RuntimeError("this SambaDC was already started")
        reason = unavailable_reason()
        if reason is not None:
            raise SambaUnavailable(reason)
        atexit.register(self.stop)  # if the caller never gets to stop(), e.g. on an exception
        try:
            self._acquire_lock()
            self._check_ports_free()
            # Short path on purpose: Samba's unix sockets live under it (108-byte limit).
            self.directory = Path(tempfile.mkdtemp(prefix="samba-dc-"))
            self._step("provision", self._provision)
            self._step("password_policy", self._relax_password_policy)
            self._step("tls", self._configure_tls)
            self._step("start", self._start_and_wait)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Samba by its PID (TERM, then KILL), reap its session, delete the directory.

        Safe to call more than once, and on a DC that failed halfway through :meth:`start`.
        """
        atexit.unregister(self.stop)
        started = time.monotonic()
        if self._process is not None:
            self._end_process(kill=False)
            self.timings["stop"] = time.monotonic() - started
        if self.directory is not None and not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        if self._lock is not None:
            # Only now: the ports are free for the next SambaDC on this address.
            os.close(self._lock)
            self._lock = None

    def crash(self) -> None:
        """Kill Samba at once (SIGKILL), keeping its domain: a DC that dies mid-operation."""
        self._end_process(kill=True)

    def pause(self) -> None:
        """Stop Samba cleanly (TERM), keeping its domain: for offline work on its database
        files, such as a benchmark's bulk import (``bench/samba_import.py``). :meth:`restart`
        starts it again."""
        self._end_process(kill=False)

    def restart(self) -> None:
        """Start Samba again on the same domain, e.g. after :meth:`crash` or :meth:`pause`."""
        if self.running():
            raise RuntimeError("this SambaDC is still running")
        self._start_and_wait()

    def _end_process(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        # Samba runs in its own session (its PID is the session id), so anything left there
        # is one of its children. The root exits at once; with the prefork model its "tfork
        # waiter" children follow about 1.5 s later. Give them that, then kill stragglers.
        deadline = time.monotonic() + 5
        while (members := _session_members(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> SambaDC:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- steps ------------------------------------------------------------------------------

    def _path(self, *parts: str) -> Path:
        if self.directory is None:
            raise RuntimeError("the DC is not started")
        return self.directory.joinpath(*parts)

    def _step(self, name: str, action: Callable[[], None]) -> None:
        started = time.monotonic()
        action()
        self.timings[name] = time.monotonic() - started
        if not self.quiet:
            print(f"samba-dc: {name} {self.timings[name]:.1f} s", file=sys.stderr, flush=True)

    def _acquire_lock(self) -> None:
        """Hold a machine-wide lock on the address for the DC's lifetime.

        Samba cannot move its ports, so two DCs on one address (two test sessions on a shared
        machine, or tests while a developer's `python -m tests.fakes.samba` runs) would race for
        389 and one would die halfway. With the lock the second waits, or fails naming the
        holder. flock is released by the kernel when the holder dies, so no lock goes stale.
        """
        path = Path(tempfile.gettempdir()) / f"provisioner-samba-dc-{self.host}.lock"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.lock_timeout
        told = False
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip()
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    raise SambaError(
                        f"another Samba DC holds {self.host} ({holder or 'unknown holder'}; "
                        f"lock {path}) and did not stop within {self.lock_timeout:.0f} s. "
                        "Stop it (Ctrl-C in its terminal), or wait for that test run to end."
                    ) from None
                if not told:
                    print(
                        f"samba-dc: waiting for the other Samba DC on {self.host} to stop "
                        f"({holder}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    told = True
                time.sleep(0.5)
        os.ftruncate(descriptor, 0)
        command = " ".join(sys.argv)[:120]
        os.pwrite(descriptor, f"PID {os.getpid()}: {command}\n".encode(), 0)
        self._lock = descriptor

    def _check_ports_free(self) -> None:
        busy = []
        for port in PORTS:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(1)
                if probe.connect_ex((self.host, port)) == 0:
                    busy.append(port)
        if busy:
            raise SambaError(self._ports_busy_message(busy))

    def _ports_busy_message(self, busy: list[int]) -> str:
        return (
            f"{self.host}: port(s) {', '.join(map(str, busy))} already in use by a server that "
            "is not a SambaDC of this project (a system samba or slapd? see `ss -ltnp`). Samba "
            "cannot move its LDAP ports: stop that server, or use another loopback address "
            "assigned to lo (ip addr add 127.0.0.2/8 dev lo; SambaDC('127.0.0.2'))."
        )

    def _run(self, args: list[str], log: Path, timeout: float, what: str) -> None:
        with log.open("ab") as out:
            try:
                result = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise SambaError(
                    f"{what} took over {timeout:.0f} s; {log}:\n{_tail(log)}"
                ) from None
        if result.returncode != 0:
            raise SambaError(f"{what} failed (exit {result.returncode}); {log}:\n{_tail(log)}")

    def _provision(self) -> None:
        directory = self._path()
        run_dir = self._path("run")
        for sub in ("run", "log"):
            self._path(sub).mkdir()
        samba_tool = shutil.which("samba-tool", path=_SEARCH_PATH) or "samba-tool"
        options = {
            # Listen on this one address only.
            "interfaces": self.host,
            "bind interfaces only": "yes",
            # Only the LDAP server: no KDC, RPC, NetBIOS, DNS updates or replication to wait for.
            "server services": "ldap",
            # Keep pid file, sockets and logs inside the directory instead of Samba's system ones.
            "pid directory": str(run_dir),
            "ncalrpc dir": str(run_dir / "ncalrpc"),
            "winbindd socket directory": str(run_dir / "winbindd"),
            "ntp signd socket directory": str(run_dir / "ntp_signd"),
            "log file": str(self._path("log", "log.%m")),
            "panic action": "",
            # No fsync: much faster writes, and the data is thrown away anyway.
            "ldb:nosync": "true",
        }
        args = [
            samba_tool,
            "domain",
            "provision",
            f"--targetdir={directory}",
            f"--realm={self.realm}",
            f"--domain={self.domain}",
            "--server-role=dc",
            "--dns-backend=NONE",
            f"--host-name={HOST_NAME}",
            f"--adminpass={self.admin_password}",
            "--use-rfc2307",
            "--backend-store=tdb",
            *(f"--option={name}={value}" for name, value in options.items()),
        ]
        self._run(args, self._path("log", "provision.log"), PROVISION_TIMEOUT, "provisioning")

    def _relax_password_policy(self) -> None:
        # Offline, on the database file, before the first start: 0.3 s. Tests can then set short
        # passwords and change them again at once; a test that wants AD's real password errors
        # sets the policy back itself over LDAP.
        samba_tool = shutil.which("samba-tool", path=_SEARCH_PATH) or "samba-tool"
        args = [
            samba_tool,
            "domain",
            "passwordsettings",
            "set",
            "-H",
            str(self._path("private", "sam.ldb")),
            "-s",
            str(self._path("etc", "smb.conf")),
            "--complexity=off",
            "--min-pwd-length=0",
            "--min-pwd-age=0",
            "--max-pwd-age=0",
            "--history-length=0",
        ]
        self._run(args, self._path("log", "provision.log"), 60, "relaxing the password policy")

    def _configure_tls(self) -> None:
        # Left alone, Samba makes its own certificate on first start: slower (RSA-4096) and
        # without subjectAltName, so clients could not verify it against 127.0.0.1.
        tls_dir = self._path("tls")
        tls_dir.mkdir(mode=0o700)
        ca = make_test_ca(
            tls_dir,
            dns_names=[FQDN, FQDN.lower()],
            ip_addresses=[self.host],
            common_name=FQDN,
            days=max(2, self.max_runtime // 86400 + 2),
        )
        # Provisioning drops --option values that equal Samba's defaults and rewrites the file,
        # so settings are added to [global] afterwards. `tls cafile` also lets samba-tool verify
        # ldaps:// with `-s etc/smb.conf` (it otherwise looks in the system location).
        settings = {
            "tls enabled": "yes",
            "tls keyfile": str(ca.key_file),
            "tls certfile": str(ca.cert_file),
            "tls cafile": str(ca.ca_file),
        }
        conf = self._path("etc", "smb.conf")
        text = conf.read_text()
        if "[global]\n" not in text:
            raise SambaError(f"{conf} has no [global] section:\n{text}")
        lines = "".join(f"\t{name} = {value}\n" for name, value in settings.items())
        conf.write_text(text.replace("[global]\n", f"[global]\n{lines}", 1))

    def _start_and_wait(self) -> None:
        samba = shutil.which("samba", path=_SEARCH_PATH) or "samba"
        log = self.log_file
        with log.open("ab") as out:
            # --foreground keeps samba itself as our child, so its PID is the one we stop;
            # start_new_session (setsid) plus --no-process-group give it a session of its own, so
            # Ctrl-C on the terminal does not reach it and its children share its session id.
            self._process = subprocess.Popen(
                [
                    samba,
                    "-s",
                    str(self._path("etc", "smb.conf")),
                    "--foreground",
                    "--no-process-group",
                    "--debug-stdout",
                    "-d",
                    "1",
                    f"--maximum-runtime={self.max_runtime}",
                    *(["--model", self.process_model] if self.process_model else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        """Wait for a real LDAPS bind with CA verification; listening alone is not enough."""
        try:
            from ldap3.core.exceptions import LDAPException
        except ImportError:
            raise SambaError("ldap3 is needed to talk to the DC: pip install -e '.[dev]'") from None
        deadline = time.monotonic() + READY_TIMEOUT
        last_error = "no attempt yet"
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                log = self.log_file.read_text(errors="replace")
                if "NT_STATUS_ADDRESS_ALREADY_ASSOCIATED" in log:
                    # Taken between the check and the start, by something outside the lock.
                    raise SambaError(
                        f"{self._ports_busy_message([LDAP_PORT, LDAPS_PORT])}\n{_tail(self.log_file)}"
                    )
                raise SambaError(
                    f"samba exited with code {process.returncode} while starting; "
                    f"{self.log_file}:\n{_tail(self.log_file)}"
                )
            if "no network interfaces found" in self.log_file.read_text(errors="replace"):
                # Samba keeps running with nothing bound; waiting would only time out.
                raise SambaError(
                    f"no network interface carries {self.host}: Samba binds only addresses "
                    f"assigned to an interface (ip addr add {self.host}/8 dev lo)"
                )
            try:
                self.connect(receive_timeout=5).unbind()
                return
            except (LDAPException, OSError) as error:
                last_error = f"{type(error).__name__}: {error}"
            if time.monotonic() > deadline:
                raise SambaError(
                    f"no LDAPS bind within {READY_TIMEOUT:.0f} s (last error: {last_error}); "
                    f"{self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """Run one DC until Ctrl-C (``python -m tests.fakes.samba``)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.samba",
        description="A throwaway Samba AD domain controller (SCHOOL.TEST) on loopback, as the "
        "tests start it. Needs root and the packages of scripts/install-samba.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on; must be assigned to lo (default: 127.0.0.1)",
    )
    parser.add_argument("--password", default=ADMIN_PASSWORD, help="administrator password")
    parser.add_argument(
        "--max-runtime",
        type=int,
        default=12 * 3600,
        help="seconds after which Samba stops by itself (default: 12 hours)",
    )
    parser.add_argument(
        "--process-model",
        choices=["prefork", "single"],
        help="Samba's --model (default: prefork, as on a real DC)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait this long for another DC on the address to stop (default: fail at once)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the DC's directory after stopping (post-mortem)"
    )
    args = parser.parse_args(argv)

    # SIGTERM (e.g. `kill` from another shell) stops the DC as cleanly as Ctrl-C does.
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    dc = SambaDC(
        args.host,
        admin_password=args.password,
        max_runtime=args.max_runtime,
        process_model=args.process_model,
        lock_timeout=args.wait,
        keep=args.keep,
        quiet=False,
    )
    try:
        dc.start()
    except (SambaUnavailable, SambaError) as error:
        print(f"samba-dc: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        for line in _describe(dc):
            print(line, flush=True)
        while dc.running():
            time.sleep(1)
        print(f"samba-dc: samba exited; {dc.log_file}:\n{_tail(dc.log_file)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("samba-dc: stopping ...", file=sys.stderr, flush=True)
        return 0
    finally:
        directory = dc.directory
        dc.stop()
        if args.keep and directory is not None:
            print(f"samba-dc: kept {directory}", file=sys.stderr)


def _describe(dc: SambaDC) -> Iterator[str]:
    yield f"Samba AD DC up (PID {dc.pid}, directory {dc.directory})"
    yield f"  LDAPS     {dc.ldaps_url}   (verify with the CA file; TLS name {dc.tls_name})"
    yield f"  LDAP      {dc.ldap_url}    (StartTLS before binding)"
    yield f"  CA file   {dc.ca_file}"
    yield f"  base DN   {dc.base_dn}"
    yield f"  admin     {dc.admin_user}  or  {dc.admin_upn}  or  {dc.admin_dn}"
    yield f"  password  {dc.admin_password}"
    yield f"  log       {dc.log_file}"
    yield ""
    yield "For a shell:"
    for name, value in dc.details().items():
        yield f"  export {name}={shlex.quote(value)}"
    yield ""
    yield "Ctrl-C stops the DC and deletes its directory."


if __name__ == "__main__":
    sys.exit(main())
