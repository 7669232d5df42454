"""Targets: the directories a plan is applied to (Active Directory, Entra ID).

This module is the only place outside a target's own package that names the targets: the
pipeline opens whichever the configuration holds through :func:`open_target` and sees it only
through :class:`~provisioner.targets.base.Target`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.errors import ConfigError

if TYPE_CHECKING:
    from provisioner.config import TargetConfig
    from provisioner.model import DesiredState
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
                "target.ad needs the ldap3 package: pip install 'provisioner[ad]'"
            ) from None
        return ActiveDirectory(config.ad, **seams)
    if config.entra is not None:
        try:
            from provisioner.targets.entra import EntraId
        except ImportError:
            raise ConfigError(
                "target.entra needs msgraph-sdk and azure-identity: "
                "pip install 'provisioner[entra]'"
            ) from None
        return EntraId(config.entra, **seams)
    return None


def naming_problems(config: TargetConfig | None, desired: DesiredState) -> list[str]:
    """Names in *desired* that the configured directory would refuse (each with the person or
    group, the attribute and what is wrong), checked without connecting to it; none without a
    target. The rules live with each target's settings, which need no client library."""
    if config is None:
        return []
    if config.ad is not None:
        from provisioner.targets.ad_settings import naming_problems as ad_problems

        return ad_problems(config.ad, desired)
    if config.entra is not None:
        from provisioner.targets.entra_settings import naming_problems as entra_problems

        return entra_problems(config.entra, desired)
    return []
