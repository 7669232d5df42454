"""Source-side scenarios the target tests share: the same day 2 for Active Directory and Entra ID."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REFERENCE_DAY
from tests.fakes.synthetic import SyntheticData

NEWCOMER = "99999991"


def pupil(key: str) -> str:
    """The anchor the default mappings give pupil *key* (its p_persoon)."""
    return f"lln-{key}"


def staff(key: str) -> str:
    """The anchor the default mappings give staff member *key*."""
    return f"pers-{key}"


@dataclass
class DayTwo:
    """The synthetic school a day later: one pupil left, one changed class, one changed name,
    one is new."""

    data: SyntheticData
    leaver: str
    mover: str
    renamed: str
    old_class: str
    new_class: str
    school: str
    """The mover's school."""


def day_two(synthetic: SyntheticData) -> DayTwo:
    n = synthetic.notable
    day2 = copy.deepcopy(synthetic)
    leaver, mover, renamed = n["diacritics"], n["apostrophe"], n["pupil"]
    day2.rows["Lln"] = [r for r in day2.rows["Lln"] if r["p_persoon"] != leaver]
    moving = next(r for r in day2.rows["Lln"] if r["p_persoon"] == mover)
    old_class, school = moving["Klascode"], moving["_instelnr"]
    new_class = "6WEWI" if old_class != "6WEWI" else "1A"
    for row in day2.rows["Lln"]:
        if row["p_persoon"] == mover:
            row["Klascode"] = new_class
        if row["p_persoon"] == renamed:
            row["Naam"] = "Nieuwenaam"
    for row in day2.rows["Subgroepen"]:
        if row["p_persoon"] == mover and row.get("Groeptype") == "0":
            row["Klascode"] = new_class
    newcomer = copy.deepcopy(next(r for r in day2.rows["Lln"] if r["p_persoon"] == renamed))
    newcomer.update(p_persoon=NEWCOMER, Voornaam="Nieuwe", Naam="Leerling")
    day2.rows["Lln"].append(newcomer)
    return DayTwo(day2, leaver, mover, renamed, old_class, new_class, school)


def config_head(
    informat_url: str, mappings: Path, instelnrs: Sequence[str] = ("030569", "030577")
) -> str:
    """The part of provisioner.yaml the target tests share: mappings, state store, policy and the
    Informat source (password from ``$TEST_INFORMAT_PASSWORD``). A ``target:`` section follows."""
    return (
        f"mappings: {mappings}\n"
        "state: state.db\n"
        # These tests read live data dated today: no summer freeze, whatever the date.
        "policy:\n  freeze_leavers: []\n"
        "source:\n  informat:\n"
        f"    url: {informat_url}\n"
        "    login: webservices@school.be\n"
        "    password: ${TEST_INFORMAT_PASSWORD}\n"
        "    schooljaar: 2025-26\n"
        f"    instelnrs: [{', '.join(repr(i) for i in instelnrs)}]\n"
        f"    referentiedatum: {REFERENCE_DAY:%d-%m-%Y}\n"
    )


def ad_target(samba_dc, root: str) -> str:
    """The ``target:`` section for the test suite's Samba DC, managing *root* (an OU below the
    base DN); the password from ``$TEST_AD_PASSWORD``."""
    return (
        "target:\n  ad:\n"
        f"    url: {samba_dc.ldaps_url}\n"
        f"    bind_user: {samba_dc.admin_user}\n"
        "    password: ${TEST_AD_PASSWORD}\n"
        f"    base_dn: {samba_dc.base_dn}\n"
        f"    managed_root: {root}\n"
        f"    ca_file: {samba_dc.ca_file}\n"
    )
