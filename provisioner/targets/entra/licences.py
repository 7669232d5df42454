"""Licences in Entra ID: the tenant's SKUs (``subscribedSkus``), a user's ``assignedLicenses``
in the mappings' form (:mod:`provisioner.licences`), and the ``assignLicense`` body that turns
one into the other.

Only the SKUs the mappings name are the connector's: an account's licences of other SKUs are
neither shown in the plan nor taken away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import ConfigError
from provisioner.licences import Licences, licence_text, parse_licences
from provisioner.targets.base import TargetError
from provisioner.targets.entra.transport import Graph


@dataclass
class Sku:
    """One SKU of the tenant: its id, its service plans by name, its free units."""

    sku_id: str
    part_number: str
    plans: dict[str, str] = field(default_factory=dict)
    """Service plan name → servicePlanId."""
    free: int = 0
    """Enabled prepaid units not consumed."""


@dataclass
class Catalog:
    """The tenant's SKUs the mappings name, both ways."""

    skus: dict[str, Sku] = field(default_factory=dict)
    """Part number → SKU."""

    def part_number(self, sku_id: str) -> str | None:
        return next((s.part_number for s in self.skus.values() if s.sku_id == sku_id), None)

    @property
    def free(self) -> dict[str, int]:
        return {part: sku.free for part, sku in self.skus.items()}

    def held(self, user: Mapping[str, Any]) -> Licences:
        """A user's licences of the managed SKUs, with the names of the plans left off."""
        found: Licences = {}
        for assigned in user.get("assignedLicenses") or []:
            part = self.part_number(str(assigned.get("skuId") or ""))
            if part is None:
                continue  # a SKU no mapping names: not the connector's
            names = {plan_id: name for name, plan_id in self.skus[part].plans.items()}
            disabled = assigned.get("disabledPlans") or []
            found[part] = frozenset(names.get(str(p), str(p)) for p in disabled)
        return found

    def text(self, user: Mapping[str, Any]) -> str:
        """A user's licences in the mappings' form (empty: none of the managed SKUs)."""
        return licence_text(self.held(user))

    def assignment(self, user: Mapping[str, Any], wanted_text: str) -> dict[str, Any] | None:
        """The ``assignLicense`` body that gives *user* exactly the managed licences of
        *wanted_text*, or None when it has them already."""
        held, wanted = self.held(user), parse_licences(wanted_text)
        add = [
            {
                "skuId": self.skus[part].sku_id,
                "disabledPlans": sorted(self.skus[part].plans[p] for p in plans),
            }
            for part, plans in sorted(wanted.items())
            if held.get(part) != plans
        ]
        remove = [self.skus[part].sku_id for part in sorted(held.keys() - wanted.keys())]
        if not add and not remove:
            return None
        return {"addLicenses": add, "removeLicenses": remove}


async def read_catalog(graph: Graph, named: Mapping[str, frozenset[str]]) -> Catalog:
    """The tenant's SKUs of the part numbers in *named* (part number → the plan names the
    mappings leave off). A part number or plan the tenant does not have is a configuration
    error that names what it does have."""
    reply = await graph.send_json("GET", f"{graph.base_url}/subscribedSkus")
    listed = (reply or {}).get("value")
    if not isinstance(listed, list):
        raise TargetError("GET /subscribedSkus: Graph answered without a list of SKUs")
    tenant: dict[str, Sku] = {}
    for item in listed:
        part = str(item.get("skuPartNumber") or "")
        prepaid = item.get("prepaidUnits") or {}
        tenant[part] = Sku(
            sku_id=str(item.get("skuId")),
            part_number=part,
            plans={
                str(p.get("servicePlanName")): str(p.get("servicePlanId"))
                for p in item.get("servicePlans") or []
            },
            free=int(prepaid.get("enabled") or 0) - int(item.get("consumedUnits") or 0),
        )
    problems = []
    for part, plans in sorted(named.items()):
        sku = tenant.get(part)
        if sku is None:
            have = ", ".join(sorted(tenant)) or "none"
            problems.append(f"the tenant has no licence {part} (it has: {have})")
            continue
        unknown = sorted(plans - sku.plans.keys())
        if unknown:
            problems.append(
                f"{part} has no service plan {', '.join(unknown)} (it has: "
                f"{', '.join(sorted(sku.plans))})"
            )
    if problems:
        raise ConfigError("accounts.*.licences: " + "; ".join(problems))
    return Catalog({part: tenant[part] for part in named})
