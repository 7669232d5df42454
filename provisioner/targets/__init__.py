"""Targets: the directories a plan is applied to (Active Directory, Entra ID).

This module is the only place outside a target's own package that names the targets: the
pipeline opens whichever the configuration holds through :func:`open_target` and sees it only
through :class:`~provisioner.targets.base.Target`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.errors import ConfigError
from provisioner.model import DesiredAccount, DesiredState, Hold, SourceRows
from provisioner.targets.naming import Findings

if TYPE_CHECKING:
    from provisioner.config import TargetConfig
    from provisioner.targets.base import Target


def open_target(config: TargetConfig | None, **seams: Any) -> Target | None:
    """The configured target, or None without one. Its client library is imported only now (an
    extra may be missing, and a plan without a target does not need it). *seams* (a clock, a
    sleep) reach the target's constructor: tests use them instead of patching modules."""
    if config is None:
        return None
    if config.ad is not None:
        try:
            from provisioner.targets.ad import ActiveDirectory
        except ImportError:
            raise ConfigError(
                "target.ad needs the ldap3 package: pip install 'informat-provisioner[ad]'"
            ) from None
        return ActiveDirectory(config.ad, **seams)
    if config.entra is not None:
        try:
            from provisioner.targets.entra import EntraId
        except ImportError:
            raise ConfigError(
                "target.entra needs msgraph-sdk and azure-identity: "
                "pip install 'informat-provisioner[entra]'"
            ) from None
        return EntraId(config.entra, **seams)
    return None


def naming_problems(config: TargetConfig | None, desired: DesiredState) -> list[str]:
    """Names in *desired* that the configured directory would refuse (each with the person or
    group, the attribute and what is wrong), checked without connecting to it; none without a
    target. The rules live with each target's settings, which need no client library."""
    return target_findings(config, desired).messages


def target_findings(config: TargetConfig | None, desired: DesiredState) -> Findings:
    """:func:`naming_problems` split by whom it stops: ``persons`` (each account with a value
    the directory cannot hold: that person is held) and ``errors`` (a group's or an OU's name:
    the plan stops)."""
    if config is not None and config.ad is not None:
        from provisioner.targets.ad_settings import target_findings as ad_findings

        return ad_findings(config.ad, desired)
    if config is not None and config.entra is not None:
        from provisioner.targets.entra_settings import target_findings as entra_findings

        return entra_findings(config.entra, desired)
    return Findings()


def names_ignore_case(config: TargetConfig | None) -> frozenset[str] | None:
    """None where the directory tells names apart by case. For Active Directory, which holds
    OU names, group keys and anchors that differ only by case as one (``1a`` and ``1A`` are one
    OU), the attributes whose values it also compares without case (the object's name): the
    plan then follows the case the directory already holds, so that it converges."""
    if config is not None and config.ad is not None:
        from provisioner.targets.ad_settings import CASELESS_ATTRIBUTES

        return CASELESS_ATTRIBUTES
    return None


def hold_persons(
    desired: DesiredState, persons: list[tuple[DesiredAccount, str]], rows: SourceRows
) -> None:
    """Take each person whose value the directory cannot hold out of *desired* and hold them
    (see :class:`~provisioner.model.Hold`): their existing account is left as it is, everyone
    else proceeds. One hold per person, with every reason."""
    reasons: dict[str, list[str]] = {}
    owners: dict[str, DesiredAccount] = {}
    for account, message in persons:
        reasons.setdefault(account.anchor, []).append(message)
        owners[account.anchor] = account
    for anchor, messages in reasons.items():
        account = owners[anchor]
        desired.withdraw(
            Hold(
                kind=account.kind,
                key=person_key(account, rows),
                school=account.school,
                reason="; ".join(messages) + " (held until the data or the mapping is corrected)",
                anchor=anchor,
            )
        )


def person_key(account: DesiredAccount, rows: SourceRows) -> str:
    """The person's key in the source (p_persoon): the key field of the first data set the
    account was made from (its driving data set); the anchor when none is known."""
    for dataset, record in account.person.items():
        if isinstance(record, dict) and dataset in rows.datasets:
            key = record.get(rows.datasets[dataset].key)
            if key is not None:
                return str(key)
    return account.anchor
