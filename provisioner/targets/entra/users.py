"""The changes to users: create, adopt, rename, update, enable, disable, delete; and a password.

Each handler is a coroutine that sends its requests through the phase's
:class:`~provisioner.targets.entra.batch.Batcher` and keeps the snapshot up to date. A create sent
again after its answer was lost meets itself ("already exists") and is recognised by its anchor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

from provisioner.licences import ATTRIBUTE
from provisioner.plan.model import Change, Kind
from provisioner.targets.base import Result, TargetError
from provisioner.targets.entra.batch import Batcher
from provisioner.targets.entra.licences import Catalog
from provisioner.targets.entra.snapshot import LIMITS, Applier, graph_value


class Users(Applier):
    upn_planned: frozenset[str] = frozenset()
    """Anchors whose UPN the plan sets itself: a rename leaves the UPN to that update."""

    catalog: Callable[[], Catalog | None] = staticmethod(lambda: None)
    """The tenant's SKUs the mappings name (set by the target), None when they name none."""

    async def _patch(self, batcher: Batcher, change: Change, body: dict[str, Any]) -> Result:
        """Write *body* to the user; its ``licences`` (the mappings' form) go through
        ``assignLicense`` once the rest (a usageLocation) is written."""
        uid = str(change.precondition.id)
        licences = body.pop(ATTRIBUTE, None)
        if body:
            reply = await batcher.call("PATCH", f"/users/{uid}", body)
            if not reply.ok:
                return Result(change, "failed", reply.explain())
            self.snapshot().users[uid].update(body)
        if ATTRIBUTE in change.after:
            problem = await self._assign(batcher, uid, str(licences or ""))
            if problem:
                return Result(change, "failed", problem)
        return Result(change, "applied")

    async def _assign(self, batcher: Batcher, uid: str, wanted: str) -> str | None:
        """Give the user exactly the managed licences of *wanted*; what went wrong, or None."""
        catalog = self.catalog()
        user = self.snapshot().users[uid]
        if catalog is None:
            return "the mappings name no licences, yet the plan sets them: plan again"
        body = catalog.assignment(user, wanted)
        if body is None:
            return None
        if body["addLicenses"] and not user.get("usageLocation"):
            return (
                f"{user.get('userPrincipalName')} has no usageLocation, and Microsoft assigns a "
                "licence only to a user with one: set usageLocation in the mappings (e.g. "
                "usageLocation: BE) or on the user"
            )
        reply = await batcher.call("POST", f"/users/{uid}/assignLicense", body)
        if not reply.ok:
            return f"assigning licences ({wanted or 'none'}): {reply.explain()}"
        held = {a["skuId"]: a for a in user.get("assignedLicenses") or []}
        for sku_id in body["removeLicenses"]:
            held.pop(sku_id, None)
        held.update({a["skuId"]: a for a in body["addLicenses"]})
        user["assignedLicenses"] = list(held.values())
        return None

    async def create(self, batcher: Batcher, change: Change, *, password: str) -> Result:
        config = self.config
        after = change.after
        username = str(after["username"])
        body: dict[str, Any] = {
            name: value
            for name, value in after.items()
            if name in LIMITS and value not in ("", None)
        }
        body.setdefault("displayName", username)
        body.setdefault("userPrincipalName", f"{username}@{config.domains[0]}")
        body.setdefault("usageLocation", config.usage_location)
        body.update(
            accountEnabled=True,
            mailNickname=username,
            passwordProfile={
                "password": password,
                "forceChangePasswordNextSignIn": config.must_change_password,
            },
        )
        body[config.anchor_property] = change.key
        reply = await batcher.call("POST", "/users", body)
        message = ""
        if reply.conflict_on("userPrincipalName"):
            # A create retried after a timeout may have landed the first time: the user is ours
            # when it carries our anchor.
            found = await self._by_upn(str(body["userPrincipalName"]))
            if found is None or found.get(config.anchor_property) != change.key:
                return Result(
                    change,
                    "failed",
                    f"{body['userPrincipalName']} is already used by another account "
                    f"({reply.explain()})",
                )
            # Made by an attempt of this run whose answer was lost, or by another run at the
            # same moment: which password it holds is not known, so no sheet may show one.
            user = found
            message = (
                f"{body['userPrincipalName']} existed already with this person's key (another "
                "run at the same time, or an attempt whose answer was lost); its password is not "
                "known to this run"
            )
        elif not reply.ok:
            return Result(change, "failed", reply.explain())
        else:
            user = {**body, "id": reply.body["id"]}
        user.pop("passwordProfile", None)
        snapshot = self.snapshot()
        snapshot.users[user["id"]] = user
        snapshot.anchors.put(Kind.ACCOUNT, change.key, user["id"])
        unknown = bool(message)
        if ATTRIBUTE in after and not unknown:
            # The user exists, with a usageLocation: a licence it did not get is an update of
            # the next plan, so the create stands, with the reason said. (One made by another
            # attempt gets its licences from the next plan too.)
            message = await self._assign(batcher, user["id"], str(after[ATTRIBUTE] or "")) or ""
        return Result(change, "applied", message, password_unknown=unknown)

    async def _by_upn(self, upn: str) -> dict[str, Any] | None:
        """One user by UPN, through the SDK's typed request builder (one object)."""
        anchor = self.config.anchor_property
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
            select=["id", "userPrincipalName", "mailNickname", "accountEnabled", anchor]
        )
        config = RequestConfiguration(query_parameters=query)
        try:
            user = await self.graph.retrying(
                f"looking up {upn}", lambda: self.graph.client.users.by_user_id(upn).get(config)
            )
        except TargetError:
            return None
        if user is None or user.id is None:
            return None
        return {
            "id": user.id,
            "userPrincipalName": user.user_principal_name,
            "mailNickname": user.mail_nickname,
            "accountEnabled": user.account_enabled,
            anchor: user.employee_id if anchor == "employeeId" else user.on_premises_immutable_id,
        }

    async def adopt(self, batcher: Batcher, change: Change) -> Result:
        body = {n: graph_value(v) for n, v in change.after.items() if n != "anchor"}
        body[self.config.anchor_property] = change.key
        result = await self._patch(batcher, change, body)
        uid = str(change.precondition.id)
        # Written, even when its licence was not: the account carries the anchor now.
        if self.snapshot().users[uid].get(self.config.anchor_property) == change.key:
            if change.precondition.anchored is not None:  # carried over from its former anchor
                self.snapshot().anchors.forget(Kind.ACCOUNT, change.precondition.anchored)
            self.snapshot().anchors.put(Kind.ACCOUNT, change.key, str(change.precondition.id))
        return result

    async def rename(self, batcher: Batcher, change: Change) -> Result:
        """The username (mailNickname) and the unique attributes the plan renames with it
        (userPrincipalName, mail). Without a UPN of its own, the UPN follows the username when
        its local part was the old username. Graph keeps no old address as an alias."""
        user = self.snapshot().users[str(change.precondition.id)]
        new, old = str(change.after["username"]), str(change.before.get("username") or "")
        body: dict[str, Any] = {
            name: graph_value(value) for name, value in change.after.items() if name != "username"
        }
        body["mailNickname"] = new
        local, _, domain = str(user.get("userPrincipalName") or "").partition("@")
        follows = local.casefold() == old.casefold() and change.key not in self.upn_planned
        if "userPrincipalName" not in body and follows:
            body["userPrincipalName"] = f"{new}@{domain}"  # the UPN follows the username
        return await self._patch(batcher, change, body)

    async def update(self, batcher: Batcher, change: Change) -> Result:
        body = {name: graph_value(value) for name, value in change.after.items()}
        return await self._patch(batcher, change, body)

    async def enable(self, batcher: Batcher, change: Change) -> Result:
        return await self._patch(batcher, change, {"accountEnabled": True})

    async def disable(self, batcher: Batcher, change: Change) -> Result:
        return await self._patch(batcher, change, {"accountEnabled": False})

    async def delete(self, batcher: Batcher, change: Change) -> Result:
        uid = str(change.precondition.id)
        reply = await batcher.call("DELETE", f"/users/{uid}")
        if not reply.ok and reply.status != 404:  # 404: deleted already (a retried delete)
            return Result(change, "failed", reply.explain())
        snapshot = self.snapshot()
        snapshot.users.pop(uid, None)
        snapshot.anchors.forget(Kind.ACCOUNT, change.key)
        return Result(change, "applied")

    async def set_password(self, uid: str, password: str) -> None:
        """A new password for one user (one object: the SDK's typed model)."""
        profile = PasswordProfile(
            password=password,
            force_change_password_next_sign_in=self.config.must_change_password,
        )
        await self.graph.retrying(
            f"setting the password of {uid}",
            lambda: self.graph.client.users.by_user_id(uid).patch(User(password_profile=profile)),
        )
