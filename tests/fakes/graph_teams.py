"""Teams on the project's Graph server: teams made on Microsoft 365 groups, their asynchronous
operations, archive and unarchive, the delay before a new group is known to Teams, and Teams' own
throttling.

Routes (below the version root, from the socket or inside ``$batch``):

- ``POST /teams`` with ``template@odata.bind`` (``teamsTemplates('educationClass')`` or
  ``('standard')``) and ``group@odata.bind`` (``groups('{id}')``): ``202 Accepted``, ``Location:
  /teams('{id}')/operations('{opId}')`` and ``Content-Location: /teams('{id}')``; the team exists
  once its operation has succeeded. 400 for a group that is no Microsoft 365 group or has no
  owner, 409 when the group has a team, 404 for a group younger than :attr:`not_yet_seconds`
  (Teams does not know it yet).
- ``PUT /groups/{id}/team``: the same checks, the team made at once (201).
- ``GET /teams/{id}``: the team (``isArchived``, ``specialization``); 404 without one.
- ``GET /teams/{id}/operations/{opId}``: a ``teamsAsyncOperation``; each look moves it on,
  ``notStarted`` → ``inProgress`` → ``succeeded`` (or ``failed`` for a group in :attr:`fail_for`);
  the first :attr:`unseen_looks` looks answer 404.
- ``POST /teams/{id}/archive`` and ``/unarchive``: 202 and an operation, as above.

The server's lock is held by the caller.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import TYPE_CHECKING, Any

from tests.fakes.graph_server import GraphError, Reply

if TYPE_CHECKING:
    from tests.fakes.graph_server import GraphServer

_GROUP_BIND = re.compile(r"/groups(?:\('([^']+)'\)|/([^/?#']+))$")
_TEMPLATE_BIND = re.compile(r"/teamsTemplates\('([^']+)'\)$")
TEMPLATES = {"educationClass": "educationClass", "standard": "none"}
"""Known templates → the team's ``specialization``."""


class FakeTeams:
    def __init__(self, server: GraphServer) -> None:
        self.server = server
        self.teams: dict[str, dict[str, Any]] = {}
        """Group id → its team (``id``, ``displayName``, ``isArchived``, ``specialization``)."""
        self.operations: dict[str, dict[str, Any]] = {}
        """Operation id → the teamsAsyncOperation, with the fake's own ``_steps`` and
        ``_effect`` (what happens when it succeeds)."""
        self.not_yet_seconds = 0.0
        """A team create on a group younger than this (by the server's clock) answers 404, as
        Teams does for up to 15 minutes after a group is made."""
        self.steps = 2
        """Looks at an operation before it ends: the first answers ``inProgress``."""
        self.unseen_looks = 0
        """The first looks at each new operation answer 404: Graph has accepted it but cannot
        show it yet."""
        self.fail_for: set[str] = set()
        """mailNicknames of groups whose team operations fail."""
        self.quota: tuple[int, float] | None = None
        """``(limit, window_seconds)``: more Teams requests in a sliding window answer 429 with
        a ``Retry-After`` (Teams' own limits, beside the directory's write quota)."""
        self.throttled = 0
        """429 answers given by :attr:`quota`."""
        self.arrivals: list[tuple[float, float | None]] = []
        """Every Teams request: (the server's clock, the Retry-After of its 429 or None)."""
        self._calls: list[float] = []

    # --- routing ------------------------------------------------------------------------------
    def route(self, method: str, parts: list[str], body: Any) -> Reply | None:
        """The answer to a Teams request, or None when *parts* is no Teams path."""
        if parts[:1] == ["teams"]:
            self._throttle()
            return self._teams(method, parts, body)
        if len(parts) == 3 and parts[0] == "groups" and parts[2] == "team" and method == "PUT":
            self._throttle()
            team = self._create(self.server._find("groups", parts[1])["id"], "standard")
            return self._reply(201, {}, self._render(team))
        return None

    def _teams(self, method: str, parts: list[str], body: Any) -> Reply:
        n = len(parts)
        if n == 1 and method == "POST":
            return self._post(body)
        if n == 2 and method == "GET":
            return self._reply(200, {}, self._render(self._team(parts[1])))
        if n == 3 and parts[2] in ("archive", "unarchive") and method == "POST":
            team = self._team(parts[1])
            archived = parts[2] == "archive"

            def effect() -> None:
                team["isArchived"] = archived

            return self._accepted(team["id"], f"{parts[2]}Team", effect)
        if n == 4 and parts[2] == "operations" and method == "GET":
            return self._reply(200, {}, self._look(parts[1], parts[3]))
        raise GraphError(405, "BadRequest", "Specified HTTP method is not allowed.")

    # --- requests -----------------------------------------------------------------------------
    def _post(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "A JSON object body is required.")
        template = _TEMPLATE_BIND.search(str(body.get("template@odata.bind") or ""))
        if template is None or template.group(1) not in TEMPLATES:
            raise GraphError(400, "BadRequest", "Invalid bind property name template.")
        bind = _GROUP_BIND.search(str(body.get("group@odata.bind") or ""))
        if bind is None:
            # Teams made from scratch (without a group) are not modelled.
            raise GraphError(400, "BadRequest", "The fake makes teams from groups only.")
        gid = bind.group(1) or bind.group(2)
        server = self.server
        if gid not in server.groups:
            raise GraphError(404, "NotFound", f"Failed to execute request for group {gid}.")
        if server.clock() - server._created_at.get(gid, -math.inf) < self.not_yet_seconds:
            # Teams' copy of the directory lags: the group is not there yet.
            raise GraphError(404, "NotFound", f"Failed to execute request for group {gid}.")
        self._check_group(gid)
        specialization = TEMPLATES[template.group(1)]

        def effect() -> None:
            self._create(gid, template.group(1), checked=True, specialization=specialization)

        return self._accepted(gid, "createTeam", effect)

    def _check_group(self, gid: str) -> None:
        group = self.server.groups[gid]
        if gid in self.teams:
            raise GraphError(409, "Conflict", "Team already exists for this group.")
        if "Unified" not in (group.get("groupTypes") or []):
            raise GraphError(
                400, "BadRequest", "A team can only be created on a Microsoft 365 group."
            )
        if not self.server.owners.get(gid):
            raise GraphError(
                400, "BadRequest", "The group must have at least one owner to create a team."
            )

    def _create(
        self, gid: str, template: str, *, checked: bool = False, specialization: str = "none"
    ) -> dict[str, Any]:
        if not checked:
            self._check_group(gid)
        group = self.server.groups[gid]
        team = {
            "id": gid,
            "displayName": group.get("displayName"),
            "description": group.get("description"),
            "isArchived": False,
            "specialization": specialization,
            "template": template,
        }
        self.teams[gid] = team
        group["resourceProvisioningOptions"] = ["Team"]
        self.server._touch("groups", gid, ["resourceProvisioningOptions"])
        return team

    def _accepted(self, gid: str, kind: str, effect: Any) -> Reply:
        op_id = str(uuid.uuid4())
        self.operations[op_id] = {
            "id": op_id,
            "operationType": kind,
            "status": "notStarted",
            "attemptsCount": 1,
            "targetResourceId": gid,
            "targetResourceLocation": f"/teams('{gid}')",
            "error": None,
            "_team": gid,
            "_looks": 0,
            "_unseen": 0,
            "_effect": effect,
        }
        headers = {
            "Location": f"/teams('{gid}')/operations('{op_id}')",
            "Content-Location": f"/teams('{gid}')",
        }
        return self._reply(202, headers, None)

    def _look(self, team_id: str, op_id: str) -> dict[str, Any]:
        key = team_id.removeprefix("('").removesuffix("')")
        op = self.operations.get(op_id.removeprefix("('").removesuffix("')"))
        if op is None or op["_team"] != key:
            raise GraphError(404, "NotFound", f"Operation {op_id} not found.")
        if op["_unseen"] < self.unseen_looks:
            op["_unseen"] += 1
            raise GraphError(404, "NotFound", f"Operation {op_id} not found.")
        if op["status"] in ("notStarted", "inProgress"):
            op["_looks"] += 1
            if op["_looks"] < self.steps:
                op["status"] = "inProgress"
            elif self.server.groups.get(key, {}).get("mailNickname") in self.fail_for:
                op["status"] = "failed"
                op["error"] = {"code": "InternalServerError", "message": "Teams gave up."}
            else:
                op["status"] = "succeeded"
                op["_effect"]()
        return {k: v for k, v in op.items() if not k.startswith("_")}

    # --- helpers ------------------------------------------------------------------------------
    def _team(self, gid: str) -> dict[str, Any]:
        team = self.teams.get(gid)
        if team is None:
            raise GraphError(404, "NotFound", f"No team found with Group Id {gid}")
        return team

    @staticmethod
    def _render(team: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in team.items() if k != "template"}

    @staticmethod
    def _reply(status: int, headers: dict[str, str], body: Any) -> Reply:
        return Reply(status, headers, body)

    def _throttle(self) -> None:
        """Teams' own limit: 429 with a Retry-After beyond :attr:`quota` requests a window."""
        now = self.server.clock()
        self.arrivals.append((now, None))
        if self.quota is None:
            return
        limit, window = self.quota
        self._calls = [t for t in self._calls if t > now - window]
        if len(self._calls) >= limit:
            self.throttled += 1
            wait = max(1, math.ceil(self._calls[0] + window - now))
            self.arrivals[-1] = (now, float(wait))
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests to Teams.",
                headers={"Retry-After": str(wait)},
            )
        self._calls.append(now)

    def forget(self, gid: str) -> None:
        """A deleted group takes its team with it."""
        self.teams.pop(gid, None)
