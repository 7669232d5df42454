"""Names that differ only by case, in a directory that holds them as one.

Active Directory compares OU names, group keys and anchors without case: ``OU=1a`` and ``OU=1A``
are one OU, and a group whose key is ``klas-1a`` is found by ``klas-1A``. A plan that compared
them with case would never settle: it would create an OU that exists (and be skipped), move
accounts to where they already are, and try to create a group every night. So, before the diff,
the desired state takes the case the directory already holds; names new to the directory that
differ only by case among themselves become one (the first in sorted order), with a warning.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from provisioner.model import (
    Derived,
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    ObservedState,
)

Path = tuple[str, ...]


def _folded(path: Iterable[str]) -> Path:
    return tuple(part.casefold() for part in path)


class _OuCase:
    """The one spelling of each OU path: the directory's, else the first one desired."""

    def __init__(self, observed: Iterable[Path]) -> None:
        self.chosen: dict[Path, Path] = {}
        self.merged: dict[Path, set[Path]] = {}
        self._spelled: dict[Path, Path] = {}  # thousands of accounts share a few hundred paths
        for path in sorted(observed, key=len):
            self._learn(path)

    def _learn(self, path: Path) -> Path:
        out: Path = ()
        for part in path:
            wanted = (*out, part)
            out = self.chosen.setdefault(_folded(wanted), wanted)
        return out

    def of(self, path: Path) -> Path:
        out = self._spelled.get(path)
        if out is None:
            out = self._spelled[path] = self._learn(path)
            if out != path:
                self.merged.setdefault(out, set()).add(path)
        return out


def follow_directory_case(
    desired: DesiredState, observed: ObservedState, attributes: Collection[str] = ()
) -> None:
    """Give *desired* the case *observed* already holds for OU paths, group keys, anchors and
    the values of *attributes*, and make desired names that differ only by case one (see the
    module's docstring)."""
    new_ous = sorted(desired.ous - observed.ous)
    ous = _OuCase(observed.ous)
    for path in new_ous:  # sorted: the same spelling wins every night
        ous.of(path)
    desired.ous = {ous.of(path) for path in desired.ous}
    for obj in (*desired.accounts.values(), *desired.groups.values()):
        obj.ou = ous.of(obj.ou)
    _follow_anchors(desired, observed)
    _follow_group_keys(desired, observed)
    _follow_values(desired, observed, attributes)
    observed_ous = {_folded(path) for path in observed.ous}
    for kept, others in sorted(ous.merged.items()):
        spellings = sorted(o for o in others if _folded(o) not in observed_ous)
        if spellings:
            desired.report.warnings.append(
                f"OU {' / '.join(spellings[0])} differs only by case from "
                f"{' / '.join(kept)}: Active Directory holds them as one OU, named "
                f"'{' / '.join(kept)}' (rename the OU in the directory to change its case)"
                if len(spellings) == 1
                else f"OU paths {', '.join(' / '.join(s) for s in spellings)} differ only by "
                f"case from {' / '.join(kept)}: Active Directory holds them as one OU"
            )


def _follow_anchors(desired: DesiredState, observed: ObservedState) -> None:
    """Desired anchors in the directory's case, also as group members and owners. (Desired
    anchors that differ only by case among themselves are found at validate: those persons are
    held.)"""
    held = {a.anchor.casefold(): a.anchor for a in observed.accounts if a.anchor}
    renamed: dict[str, str] = {}
    for anchor in list(desired.accounts):
        existing = held.get(anchor.casefold())
        if existing is not None and existing != anchor and existing not in desired.accounts:
            account = desired.accounts.pop(anchor)
            account.anchor = existing
            desired.accounts[existing] = account
            renamed[anchor] = existing
    if renamed:
        for group in desired.groups.values():
            group.members = {renamed.get(a, a) for a in group.members}
            group.owners = {renamed.get(a, a) for a in group.owners}


def _follow_group_keys(desired: DesiredState, observed: ObservedState) -> None:
    """Group keys in the directory's case; desired groups whose keys differ only by case are
    merged into one (the directory could hold only one of them): members and owners together,
    the first key's name and attributes, with a warning."""
    chosen = {g.key.casefold(): g.key for g in observed.groups if g.key}
    groups: dict[str, DesiredGroup] = {}
    for key in sorted(desired.groups):
        group = desired.groups[key]
        folded = key.casefold()
        spelling = chosen.setdefault(folded, key)
        kept = groups.get(spelling)
        if kept is None:
            group.key = spelling
            groups[spelling] = group
            continue
        kept.members |= group.members
        kept.owners |= group.owners
        desired.report.warnings.append(
            f"group {key} differs only by case from group {kept.key}: Active Directory holds "
            f"them as one group, so they are one group '{kept.key}' with the members of both "
            "(check the class codes in the source if they are meant to be two classes)"
        )
    desired.groups = groups


def _follow_values(
    desired: DesiredState, observed: ObservedState, attributes: Collection[str]
) -> None:
    """The values of *attributes* that differ from the directory's only by case take its case."""
    if not attributes:
        return
    caseless = {name.casefold() for name in attributes}
    pairs: list[tuple[DesiredAccount | DesiredGroup, dict[str, str]]] = []
    held_accounts = {a.anchor: a.attributes for a in observed.accounts if a.anchor}
    held_groups = {g.key: g.attributes for g in observed.groups if g.key}
    pairs += [
        (a, held_accounts[a.anchor]) for a in desired.accounts.values() if a.anchor in held_accounts
    ]
    pairs += [(g, held_groups[g.key]) for g in desired.groups.values() if g.key in held_groups]
    for obj, held in pairs:
        folded_held: dict[str, str] | None = None  # made for the few with something to follow
        for name, derived in obj.attributes.items():
            if held.get(name) == derived.value or name.casefold() not in caseless:
                continue  # the usual case: held as it is (or not an attribute to follow)
            if folded_held is None:
                folded_held = {n.casefold(): value for n, value in held.items()}
            have = folded_held.get(name.casefold())
            if (
                have is not None
                and have != derived.value
                and have.casefold() == derived.value.casefold()
            ):
                obj.attributes[name] = Derived(have, derived.why)
