"""Class teams: a class group's team, made on its Microsoft 365 group with the ``educationClass``
template, archived (read-only) with its group when the class is gone, unarchived when it returns.

Teams works asynchronously: ``POST /teams`` (with ``group@odata.bind``) and ``archive`` /
``unarchive`` answer ``202 Accepted`` with a ``Location`` naming a ``teamsAsyncOperation``, which
is followed until it ends (``succeeded`` or ``failed``). A group made minutes ago may not be known
to Teams yet (``404`` on the create): the create is tried again a few times, ten seconds apart (the
pattern Microsoft documents), then that class fails with a clear message and the next run tries
again. Throttling (``429`` with ``Retry-After``) is the batcher's, as for every other request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from provisioner.model import CLASS_TEAM
from provisioner.targets.entra.batch import Batcher
from provisioner.targets.entra.pacing import retry_after
from provisioner.targets.entra.snapshot import Applier
from provisioner.targets.entra.transport import Reply

TEMPLATE = "educationClass"
NOT_YET_TRIES = 4
"""Tries of a team create that meets a group Teams does not know yet (the first and three more)."""
NOT_YET_SECONDS = 10.0
"""Seconds between them."""
POLL_SECONDS = 10.0
"""Seconds between two looks at an operation, when Graph does not say (``Retry-After``)."""
MAX_POLLS = 90
"""Looks at one operation before the run stops waiting (15 minutes at the default pace: the time
Microsoft says a team may take); the operation goes on, and the next run sees its outcome."""

_OPERATION = re.compile(
    r"/teams(?:\('|/)(?P<team>[^'/()]+)(?:'\))?/operations(?:\('|/)(?P<op>[^'/()]+)(?:'\))?$"
)


def is_unified(group: Mapping[str, Any]) -> bool:
    """A Microsoft 365 group (the only kind a team can sit on)."""
    return "Unified" in (group.get("groupTypes") or [])


def team_of(group: Mapping[str, Any]) -> str | None:
    """``class`` when the group has a team (its ``resourceProvisioningOptions`` say so), else
    None."""
    return CLASS_TEAM if "Team" in (group.get("resourceProvisioningOptions") or []) else None


NO_TEAM_POSSIBLE = "none: a security group cannot have one"
"""What the plan shows as the ``team`` of a security group, so that a kind switched to teams
says at plan time why its existing groups will not get one (apply then fails each, saying what
to do)."""


def team_attribute(group: Mapping[str, Any]) -> str | None:
    """The ``team`` attribute as the plan compares it: ``class`` when the group has a team,
    :data:`NO_TEAM_POSSIBLE` for a security group, None for a Microsoft 365 group without one."""
    if (team := team_of(group)) is not None:
        return team
    return None if is_unified(group) else NO_TEAM_POSSIBLE


def operation_path(location: str) -> str | None:
    """``/teams/{id}/operations/{opId}`` from the ``Location`` of a 202 (Graph sends
    ``/teams('{id}')/operations('{opId}')``, relative or absolute), or None."""
    match = _OPERATION.search(location.strip())
    if match is None:
        return None
    return f"/teams/{match['team']}/operations/{match['op']}"


class Teams(Applier):
    """Team creates, archives and unarchives; each returns what went wrong, or None."""

    async def create(self, batcher: Batcher, gid: str) -> str | None:
        """A class team on the Microsoft 365 group *gid* (which must have an owner)."""
        root = self.config.graph_url
        body = {
            "template@odata.bind": f"{root}/teamsTemplates('{TEMPLATE}')",
            "group@odata.bind": f"{root}/groups('{gid}')",
        }
        reply = await self.graph.policy.run(
            lambda: batcher.call("POST", "/teams", body),
            lambda reply, tries: (
                NOT_YET_SECONDS if reply.status == 404 and tries < NOT_YET_TRIES else None
            ),
        )
        if reply.status == 409:
            return None  # a create sent again after its answer was lost: the team is there
        if reply.status == 404:
            return (
                f"Teams did not know the group yet after {NOT_YET_TRIES} tries "
                f"{NOT_YET_SECONDS:.0f} seconds apart (a new group takes Teams up to 15 "
                "minutes to see)"
            )
        return await self._accepted(batcher, reply, "creating the class team")

    async def archive(self, batcher: Batcher, gid: str) -> str | None:
        """The group's team made read-only; nothing when it is archived already (or gone)."""
        return await self._set_archived(batcher, gid, True)

    async def unarchive(self, batcher: Batcher, gid: str) -> str | None:
        """The group's team in use again; nothing when it is not archived (or gone)."""
        return await self._set_archived(batcher, gid, False)

    async def _set_archived(self, batcher: Batcher, gid: str, archived: bool) -> str | None:
        what = "archiving the class team" if archived else "unarchiving the class team"
        reply = await batcher.call("GET", f"/teams/{gid}?$select=id,isArchived")
        if reply.status == 404:
            return None  # no team (any more): nothing to archive
        if not reply.ok:
            return f"{what}: {reply.explain()}"
        if bool(reply.body.get("isArchived")) == archived:
            return None
        verb = "archive" if archived else "unarchive"
        reply = await batcher.call("POST", f"/teams/{gid}/{verb}")
        return await self._accepted(batcher, reply, what)

    async def _accepted(self, batcher: Batcher, reply: Reply, what: str) -> str | None:
        """The answer of an asynchronous Teams request: followed to its end when accepted."""
        if not reply.ok:
            return f"{what}: {reply.explain()}"
        if reply.status != 202:
            return None  # done at once
        location = next((v for k, v in reply.headers.items() if k.lower() == "location"), "")
        path = operation_path(location)
        if path is None:
            return f"{what}: Graph accepted it but named no operation to follow ({location!r})"
        return await self.follow(batcher, path, what, retry_after(reply.headers))

    async def follow(
        self, batcher: Batcher, path: str, what: str, first: float | None = None
    ) -> str | None:
        """Look at the operation at *path* until it has succeeded (None) or failed (why)."""
        wait = first if first is not None else POLL_SECONDS
        unknown = 0
        for _ in range(MAX_POLLS):
            await self.graph.policy.sleep(wait)
            reply = await batcher.call("GET", path)
            wait = retry_after(reply.headers) or POLL_SECONDS
            if reply.status == 404 and unknown + 1 < NOT_YET_TRIES:
                unknown += 1  # an operation Graph has just accepted may not be readable yet
                continue
            if not reply.ok:
                return f"{what}: following its operation: {reply.explain()}"
            status = str(reply.body.get("status") or "")
            if status == "succeeded":
                return None
            if status == "failed":
                error = reply.body.get("error") or {}
                detail = error.get("message") or error.get("code") or "no reason given"
                return f"{what}: Teams says the operation failed: {detail}"
        return (
            f"{what}: still running after {MAX_POLLS} looks; Teams goes on, and the next run "
            "sees how it ended"
        )
