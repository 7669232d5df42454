"""The reads of the whole managed root, made by a process of its own.

A read of the whole root (in full, or the list of what is there that an incremental read
needs: :mod:`.ad_read`) brings tens of megabytes that ldap3 receives a few KB at a time and
decodes, while this program maps the persons beside it. Each receive lets go of the interpreter
lock and, beside a busy thread, takes it back only after that thread's turn: the list of
60,000 objects took 25 s in a thread beside a busy one, against 10 s alone. A
:class:`~provisioner.helper.Helper` makes the read and sends back what a read in this process
would have given. The settings, the password among them, go over the helper's socket, never
on its command line or in its environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

from provisioner.gcpause import paused_gc
from provisioner.helper import Helper, helper_connection
from provisioner.secret import Secret
from provisioner.targets.base import TargetError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from provisioner.targets.ad_settings import AdConfig

READS = frozenset({"_list", "_read_all"})
"""The reads of :class:`~provisioner.targets.ad.ActiveDirectory` a helper makes."""


def read_apart(config: AdConfig, read: str, **arguments: Any) -> Any:
    """What ``ActiveDirectory(config).<read>(**arguments)`` gives, made by a helper; its error,
    if it fails."""
    assert read in READS, read
    # The password travels resolved: the helper has no environment to look it up in.
    password = Secret(config.password.reveal(), config.password.origin)
    helper = Helper(__name__)
    try:
        helper.connection.send((dataclasses.replace(config, password=password), read, arguments))
        try:
            kind, payload = helper.connection.recv()
        except (EOFError, OSError):
            raise TargetError(
                f"cannot read {config.managed_root}: the process reading it stopped unexpectedly "
                "(out of memory?)"
            ) from None
    finally:
        helper.stop()
    if kind == "error":
        raise payload
    return payload


def _serve(connection: Connection) -> None:
    from provisioner.targets.ad import ActiveDirectory  # the helper's import, not the caller's

    with contextlib.suppress(EOFError, OSError):  # the caller gave up: nothing to say
        config, read, arguments = connection.recv()
        reply: tuple[str, Any]
        try:
            if read not in READS:
                raise TargetError(f"no such read: {read}")
            target = ActiveDirectory(config)
            try:
                with paused_gc():  # a read builds many objects and no cycles; the helper ends
                    reply = ("done", getattr(target, read)(**arguments))
            finally:
                target.close()
        except Exception as error:  # said to the caller, which raises it as its own
            reply = ("error", error if isinstance(error, TargetError) else TargetError(str(error)))
        connection.send(reply)


if __name__ == "__main__":
    _serve(helper_connection())
