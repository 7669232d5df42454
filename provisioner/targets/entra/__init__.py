"""Entra ID over Microsoft Graph (msgraph-sdk and azure-identity).

The package's modules, from the wire up: ``pacing`` (the one retry policy, the write pacer),
``transport`` (sign-in, the SDK client, raw JSON requests, paging, Graph's errors), ``batch``
(``$batch`` requests of 20), ``snapshot`` (the managed scope and what may be written there),
``users`` and ``groups`` (the changes per object kind) and ``target`` (:class:`EntraId`, what the
pipeline sees). How it works and why: ``docs/entra.md``.
"""

from provisioner.targets.entra.target import EntraId

__all__ = ["EntraId"]
