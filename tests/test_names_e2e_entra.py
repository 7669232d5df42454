"""Against the Graph-compatible server with the real msgraph-sdk, through the command line: a
naming change with ``rename: keep`` (a notice, nothing renamed) and ``follow`` (renamed with
--approve: mailNickname and UPN; the old names recorded, never given again; the next plan empty),
and a name another user of the tenant holds (skipped for the next free one, no night fails)."""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import shutil
from pathlib import Path

from provisioner.state import StateStore
from tests.test_entra import ROOT, cli, clock, entra_env, graph, graph_ca, users

DEFAULT_TEMPLATE = "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(fallback='lln' ~ key) }}"
INITIAL_TEMPLATE = "{{ (Lln.Voornaam | left(1) ~ Lln.Naam) | username(fallback='lln' ~ key) }}"


def mappings(folder: Path, template: str, rename: str) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(ROOT / "examples/entra/mappings", folder)
    pupils = folder / "pupils.yaml"
    text = pupils.read_text()
    assert DEFAULT_TEMPLATE in text
    pupils.write_text(
        text.replace(DEFAULT_TEMPLATE, template).replace(
            "      max_length: 30\n", f"      max_length: 30\n      rename: {rename}\n"
        )
    )
    return folder


def test_a_naming_change_in_entra_is_kept_or_followed(
    graph, informat_server, entra_env, cli, tmp_path
):
    config = entra_env(informat_server.url)
    cli.apply(config)
    before = {anchor: dict(user) for anchor, user in users(graph).items()}
    pupils = {a: u for a, u in before.items() if a.startswith("lln-")}
    assert len(pupils) > 100

    # keep: nothing renamed; the plan says how many keep a name
    config = entra_env(
        informat_server.url, mappings=mappings(tmp_path / "m", INITIAL_TEMPLATE, "keep")
    )
    code = cli(["plan", "--config", str(config)])
    out = cli.capsys.readouterr().out
    assert code == 0, out
    assert f"accounts.pupils: {len(pupils)} existing account(s) keep a name" in out

    # follow: every pupil renamed, blocked by max_rename until approved
    config = entra_env(
        informat_server.url, mappings=mappings(tmp_path / "m", INITIAL_TEMPLATE, "follow")
    )
    plan = cli.plan(config)
    renames = {c["key"]: c for c in plan["changes"] if c["action"] == "rename"}
    assert renames.keys() == pupils.keys()
    assert plan["header"]["policy_blocked"]
    assert cli(["apply", "--config", str(config)]) == 2
    cli.capsys.readouterr()
    assert cli(["apply", "--config", str(config), "--approve", "first letter and surname"]) == 0
    cli.capsys.readouterr()
    after = users(graph)
    for anchor, was in pupils.items():
        now = after[anchor]
        assert now["id"] == was["id"]  # the same user, renamed
        wanted = renames[anchor]["after"]
        assert now["mailNickname"] == wanted["username"] != was["mailNickname"]
        assert now["userPrincipalName"] == wanted["userPrincipalName"]
        local = now["userPrincipalName"].split("@")[0]
        assert local.startswith(wanted["username"].rstrip("0123456789")[:10])  # the whole name
    assert cli.plan(config)["changes"] == []  # every pupil carries the new name

    with StateStore(config.parent / "state.db") as store:
        issued = {name.casefold() for name in store.issued_names()}
    assert {u["userPrincipalName"].casefold() for u in pupils.values()} <= issued
    assert {u["mailNickname"].casefold() for u in pupils.values()} <= issued


def test_a_name_another_user_of_the_tenant_holds_is_skipped(
    graph, informat_server, entra_env, cli, tmp_path
):
    config = entra_env(informat_server.url)
    first = {c["key"]: c for c in cli.plan(config)["changes"] if c["action"] == "create"}
    anchor, wanted = next((k, c) for k, c in sorted(first.items()) if k.startswith("lln-"))
    upn = wanted["after"]["userPrincipalName"]
    graph.add_user(
        userPrincipalName="oud.adres@andere-school.be",
        mailNickname="oud.adres",
        displayName="Oud adres",
        accountEnabled=True,
        passwordProfile={"password": "Oud-Wacht-Woord-1"},
        proxyAddresses=[f"smtp:{upn}"],
    )
    plan = cli.plan(config)
    (create,) = [c for c in plan["changes"] if c["action"] == "create" and c["key"] == anchor]
    assert create["after"]["userPrincipalName"] != upn
    assert any("taken outside the managed scope" in w for w in plan["header"]["warnings"])
    cli.apply(config)  # no create fails on the name
    assert cli.plan(config)["changes"] == []
