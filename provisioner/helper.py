"""A helper process: a fresh interpreter running one of this package's modules, connected by a
socket pair.

Used where work in a thread of this program would wait on the interpreter lock, or make the
other threads wait on it (:mod:`provisioner.sources.informat.workers`,
:mod:`provisioner.targets.ad_apart`). A fresh interpreter (~0.1 s to start) rather than a fork:
forking this program could copy a lock another thread holds, and multiprocessing's spawn and
fork server import the program's main module again in every helper (all of provisioner, msgraph
included). A helper ends when its socket closes, also when this program dies.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import provisioner

AVAILABLE = os.name != "nt"
"""Helpers can be started here: a helper inherits its end of the socket pair by descriptor,
which Windows does not pass on (``pass_fds``). Without them the work stays in this process."""
_IMPORT_ROOT = str(Path(provisioner.__file__).resolve().parent.parent)
_KEPT_ENVIRONMENT = ("PYTHON", "LANG", "LC_", "SSL_CERT_")
"""Python's own settings, the locale and where TLS finds its CAs: the secrets in this
environment are none of a helper's business (one that needs a secret is sent it)."""


class Helper:
    """``python -m MODULE FD``, where FD is the helper's end of the socket pair."""

    def __init__(self, module: str) -> None:
        ours, theirs = socket.socketpair()
        env = {k: v for k, v in os.environ.items() if k.startswith(_KEPT_ENVIRONMENT)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_IMPORT_ROOT, env.get("PYTHONPATH")]))
        with ours, theirs:
            self.process = subprocess.Popen(  # noqa: S603 (this interpreter, a fixed module)
                [sys.executable, "-m", module, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
            self.connection = Connection(os.dup(ours.fileno()))

    def stop(self) -> None:
        self.connection.close()  # the helper's next receive ends, and so does the helper
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def helper_connection() -> Connection:
    """In a helper: its end of the socket pair (from its command line)."""
    return Connection(int(sys.argv[1]))
