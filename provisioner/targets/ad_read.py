"""The read of the managed root kept between nights, and the incremental read that builds on it.

A full read of the managed root asks the DC for every OU, group and user account in it. The next
night only what changed is asked for, and folded into what was kept (in the state store, through
:class:`~provisioner.targets.base.ReadBase`); the result is the same as a full read's:

- **The watermark**, read *before* each read: the DC's ``invocationId`` (its database's identity:
  another DC, or the same one restored from a backup, has another) and the rootDSE's
  ``highestCommittedUSN``. Every change made after it has a higher ``uSNChanged``.
- **What changed**: the objects below the root whose ``uSNChanged`` is above the watermark's USN,
  with every attribute a read asks for.
- **What is there**: a read of the root that asks for no attribute at all (only the DN, in
  its extended form, which carries the objectGUID). It tells which objects are still below the
  root and where: a deleted object, or one moved out, is dropped; an OU renamed or moved carries
  its whole subtree to new DNs without their ``uSNChanged`` changing, and the new DNs come from
  here; objects that came in without a change of their own (below an OU moved in) are read by
  objectGUID. It is the slow part (the DC visits every object), so it is read by a helper
  process (:mod:`.ad_apart`) while the changes are read, in one search rather than in pages where
  the DC allows.
- **What it most likely gives**: the observed state of the kept objects with the changes folded
  in is handed to the caller (:meth:`~provisioner.targets.base.ReadBase.expect`) before the list
  of what is there arrives, so that the plan can be made meanwhile. When the list shows the same
  objects at the same DNs, the read returns that very state; else it folds the list in and
  returns another.
- **A full read that is due** (``full_read_every``, ``--full-read``) is foreseen the same way
  from the read kept of the same scope and DC, however old (``ReadBase.guess``): what changed
  since is folded into it and handed over before the full read, which stands for it only when it
  gives exactly those objects.

Why not the deleted objects and a search of the whole domain with the show-deleted control: the
bind account the documentation sets up (no administrator) cannot list ``CN=Deleted Objects``,
and an object moved to an OU it may not read vanishes without a trace. Both would linger as
phantoms; the read of what is there cannot miss them (``tests/test_ad_incremental.py`` shows
both). DirSync is left out because the DC refuses it without Replicating-Directory-Changes, a
right the documentation tells not to grant.

- **Members by objectGUID**: a group's ``member`` values are DNs, which change when a member is
  renamed or moved (or an OU above it is), while the group's ``uSNChanged`` does not. The reads
  ask for extended DNs (control 1.2.840.113556.1.4.529), so each member is kept by its
  objectGUID. A member value without one (ldap3 reads the rest of a very large group in range
  steps, without the control) is kept as its DN, and such a group is read again every night.

An object is kept as ``[dn, kind, attributes, members]``: kind ``o`` (OU), ``g`` (group) or ``u``
(user account); attributes by case-folded name, each as the one text value the observed state
uses; members as objectGUIDs (or DNs, see above).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from provisioner.targets.base import text

FORMAT = 1
"""The version of what is kept: a kept read of another format is never a base."""

EXTENDED_DN = ("1.2.840.113556.1.4.529", False, None)
"""LDAP_SERVER_EXTENDED_DN_OID: DNs come as ``<GUID=…>;<SID=…>;CN=…`` (the hex form)."""

OU, GROUP, USER = "o", "g", "u"

LIMIT_RESULTS = frozenset({3, 4, 11})
"""timeLimitExceeded, sizeLimitExceeded, adminLimitExceeded: the DC will not give the whole answer
to one search (AD: more entries than its MaxPageSize), and the read goes to pages."""

Kept = list[Any]
"""One kept object: ``[dn, kind, attributes, members]``."""

_NOT_KEPT = frozenset({"objectclass", "objectguid", "member"})
"""Read, but kept in another form (the kind, the key, the members)."""


def split_extended(dn: str) -> tuple[str | None, str]:
    """(objectGUID, plain DN) of an extended DN; (None, *dn*) for a plain one."""
    guid = None
    while dn.startswith("<"):
        end = dn.find(">")
        if end < 0:
            break
        part, dn = dn[1:end], dn[end + 1 :]
        if part.upper().startswith("GUID="):
            guid = str(uuid.UUID(bytes_le=bytes.fromhex(part[5:])))
        dn = dn.removeprefix(";")
    return guid, dn


def kept_attributes(wanted: Iterable[str]) -> frozenset[str]:
    """Of the attributes a read asks for, those kept as attributes (case-folded)."""
    return frozenset(name.casefold() for name in wanted) - _NOT_KEPT


def kept_object(dn: str, values: Mapping[str, Any], kept: frozenset[str]) -> tuple[str, Kept]:
    """(objectGUID, the kept object) of one entry of a read with extended DNs; *kept* from
    :func:`kept_attributes`."""
    guid, plain = split_extended(dn)
    if guid is None:  # the DC ignored the control: the attribute still says it
        guid = _guid(values.get("objectGUID"))
    classes = {c.lower() for c in values.get("objectClass", [])}
    kind = OU if "organizationalunit" in classes else GROUP if "group" in classes else USER
    # The entry's own names (what it holds), not one lookup per attribute asked for.
    attributes = {
        folded: value
        for name, found in values.items()
        if (folded := name.casefold()) in kept and (value := text(found)) is not None
    }
    members: list[str] = []
    if kind == GROUP:
        for member in values.get("member") or []:
            member_guid, member_dn = split_extended(str(member))
            members.append(member_guid or member_dn)
    return guid, [plain, kind, attributes, members]


def managed(values: Mapping[str, Any]) -> bool:
    """True for what a read of the managed root keeps: an OU, a group or a user account (not a
    computer), by the entry's objectClass: the filter ``MANAGED_OBJECTS`` of the target."""
    classes = {c.lower() for c in values.get("objectClass", [])}
    return bool(classes & {"organizationalunit", "group"}) or (
        "user" in classes and "computer" not in classes
    )


def parent_dn(dn: str) -> str:
    """*dn* without its first RDN: the text after the first comma that is not escaped (a name
    may hold ``\\,``; a hex escape ``\\2C`` is no comma). Cheaper than parsing the whole DN."""
    start = 0
    while (comma := dn.find(",", start)) >= 0:
        backslashes = len(dn[:comma]) - len(dn[:comma].rstrip("\\"))
        if backslashes % 2 == 0:
            return dn[comma + 1 :]
        start = comma + 1
    return ""


def ranged(kept: Kept) -> bool:
    """True when a group holds members kept by DN (read in range steps, without objectGUID)."""
    return kept[1] == GROUP and any("=" in member for member in kept[3])


def guid_filter(guids: Iterable[str]) -> str:
    """A filter clause for each objectGUID, as escaped bytes."""
    clauses = "".join(
        "(objectGUID=" + "".join(f"\\{b:02x}" for b in uuid.UUID(guid).bytes_le) + ")"
        for guid in guids
    )
    return f"(|{clauses})"


def batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def watermark_problem(kept: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """Why the kept read's watermark cannot be the base of a read at *now*, or None."""
    if not isinstance(kept.get("usn"), int) or not kept.get("invocation_id"):
        return "the kept read has no watermark of this DC"
    if kept["invocation_id"] != now["invocation_id"]:
        return (
            f"another DC answered, or the DC was restored (invocationId {now['invocation_id']}, "
            f"the kept read's was {kept['invocation_id']})"
        )
    if kept["usn"] > now["usn"]:
        return f"the DC's highest USN went back ({now['usn']} < {kept['usn']}): restored?"
    return None


def _guid(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        return str(uuid.UUID(bytes_le=value))
    return str(value).strip("{}")
