"""``provisioner run``, the nightly command, against the Graph server and the Informat server:
each night in a private run folder of its own, the same exit codes as every other command,
every night (quiet, blocked, failed, approved) in the history, and what expires removed."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import stat
from pathlib import Path

from provisioner.cli import main
from provisioner.config import load_config
from provisioner.nightly import new_run_folder, remove_expired
from tests import test_entra
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.fakes.smtp_catcher import SmtpCatcher
from tests.fakes.tls import make_test_ca
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_entra import SECRET, users

# The Graph server, the clock and the command line: test_entra's fixtures.
graph_ca, graph, clock, cli = (
    test_entra.graph_ca,
    test_entra.graph,
    test_entra.clock,
    test_entra.cli,
)
entra_env = test_entra.entra_env


def runs_in(config: Path) -> list[Path]:
    return sorted((config.parent / "runs").iterdir())


def history(config: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["history", "--config", str(config), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_first_night_a_quiet_night_and_their_run_folders(
    graph, informat_server, entra_env, capsys, cli
):
    config = entra_env(informat_server.url)
    assert cli(["run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "The night: applied" in out and "Initial passwords of" in out
    assert len(users(graph)) > 100
    assert cli(["run", "--config", str(config)]) == 0
    assert "The night: nothing" in capsys.readouterr().out

    first, second = runs_in(config)
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    assert sorted(p.name for p in first.iterdir()) == [
        "log.jsonl",
        "plan.json",
        "report.html",
        "results.json",
    ]
    for path in first.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    results = json.loads((first / "results.json").read_text())
    assert results["outcome"] == "applied" and results["exit_code"] == 0
    assert results["results"]["applied"] == len(results["changes"]) > 100
    assert {s["number"] for s in results["schools"]} >= {"030569"}
    log_lines = [json.loads(line) for line in (first / "log.jsonl").read_text().splitlines()]
    assert any(line["message"] == "made the plan" for line in log_lines)
    assert json.loads((second / "results.json").read_text())["outcome"] == "nothing"
    assert [(r["command"], r["outcome"]) for r in history(config, capsys)] == [
        ("run", "nothing"),
        ("run", "applied"),
    ]


def test_a_blocked_night_is_kept_and_approved_from_its_run_folder(
    graph, informat_server, synthetic, entra_env, capsys, cli
):
    assert cli(["run", "--config", str(entra_env(informat_server.url))]) == 0
    day2 = copy.deepcopy(synthetic)
    day2.rows["Lln"] = day2.rows["Lln"][1::4]  # three quarters of the pupils "left"
    with InformatServer(day2, today=REFERENCE_DAY) as server:
        config = entra_env(server.url)
        before = copy.deepcopy(graph.users)
        assert cli(["run", "--config", str(config)]) == 2
        out = capsys.readouterr().out
        assert graph.users == before  # nothing written
        folder = runs_in(config)[-1]
        assert f"{folder / 'plan.json'} --approve leavers,drop" in out
        results = json.loads((folder / "results.json").read_text())
        assert results["outcome"] == "blocked" and results["exit_code"] == 2
        assert any("max_disable" in block for block in results["blocks"])

        # Without an approval the saved plan is refused with exit 2, as the night was.
        plan = str(folder / "plan.json")
        assert cli(["apply", "--config", str(config), plan]) == 2
        captured = capsys.readouterr()
        assert "--approve leavers" in captured.out + captured.err
        assert graph.users == before
        approve = ["--approve", "leavers,drop", "--reason", "the annex closed"]
        report = config.parent / "approved.html"
        assert cli(["apply", "--config", str(config), plan, *approve, "--report", str(report)]) == 0
        out = capsys.readouterr().out
        assert "Approved: leavers,drop by " in out and "(the annex closed)" in out
        # The approved run's report leads with the approval, not with red banners.
        html = report.read_text()
        assert "class='blocked'" not in html
        assert html.index("id='approval'") < html.index("id='summary'")
        assert "(the annex closed)" in html
        approval = html[html.index("id='approval'") : html.index("id='summary'")]
        assert "109 account disables exceed max_disable 5%" in approval
        assert "if this is right" not in approval  # what was overridden, not how to approve
    disabled = [u for u in users(graph).values() if u.get("accountEnabled") is False]
    assert len(disabled) > 50
    runs = history(config, capsys)
    assert [(r["command"], r["outcome"]) for r in runs[:3]] == [
        ("apply", "applied"),
        ("apply", "blocked"),
        ("run", "blocked"),
    ]
    approved = runs[0]["summary"]["approved"]
    assert approved["reason"] == "the annex closed" and approved["by"]
    assert main(["history", "--config", str(config), "--last", "3"]) == 0
    text = capsys.readouterr().out
    assert f"  approved (leavers, drop) by {approved['by']}: the annex closed\n" in text
    assert "    overriding: 109 account disables exceed max_disable 5%" in text
    assert text.count(": blocked\n") == 2  # the run, then the apply refused without approval
    assert approved["categories"] == ["leavers", "drop"]


def test_a_failed_night_is_kept_with_its_error(graph, entra_env, capsys, cli):
    # Informat unreachable: an unassigned loopback address.
    config = entra_env("http://127.0.0.9:9/wsInformat.asmx")
    assert cli(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err
    (folder,) = runs_in(config)
    results = json.loads((folder / "results.json").read_text())
    assert results["outcome"] == "failed" and results["error"]
    assert "plan.json" not in os.listdir(folder)
    (run,) = history(config, capsys)
    assert run["command"] == "run" and run["outcome"] == "failed"
    assert run["summary"]["error"] == results["error"]
    # The same night by apply is kept as failed too.
    assert cli(["apply", "--config", str(config)]) == 1
    assert [(r["command"], r["outcome"]) for r in history(config, capsys)] == [
        ("apply", "failed"),
        ("run", "failed"),
    ]
    assert not users(graph)


def test_old_run_folders_snapshots_and_sheets_expire(tmp_path):
    config_path = tmp_path / "provisioner.yaml"
    config_path.write_text(
        "source:\n  informat:\n    url: https://informat.example/ws\n"
        "    login: u\n    password: ${X}\n    instelnrs: ['030569']\n    schooljaar: 2026-27\n"
        "state: state.db\nruns:\n  keep_days: 60\npasswords:\n  keep_days: 30\n"
    )
    config = load_config(config_path)
    now = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)
    old = new_run_folder(config.runs_dir, now - dt.timedelta(days=61))
    kept = new_run_folder(config.runs_dir, now - dt.timedelta(days=59))
    same_second = new_run_folder(config.runs_dir, now - dt.timedelta(days=59))
    assert same_second.name == kept.name + "-2"
    other = config.runs_dir / "notes-of-the-coordinator"
    other.mkdir()
    sheets = config.sheets_dir
    sheets.mkdir(mode=0o700)
    old_sheet = sheets / "passwords-20261031-023000.csv"
    new_sheet = sheets / "passwords-20261102-023000-2.html"
    for sheet in (old_sheet, new_sheet):
        sheet.write_text("x")
    snapshot = config.snapshots_dir / "before-the-summer"
    snapshot.mkdir(parents=True)
    (snapshot / "manifest.json").write_text("{}")
    long_ago = (now - dt.timedelta(days=15)).timestamp()
    os.utime(snapshot / "manifest.json", (long_ago, long_ago))

    removed = remove_expired(config, now)
    assert sorted(removed) == sorted([old, old_sheet, snapshot])
    assert kept.exists() and same_second.exists() and other.exists() and new_sheet.exists()


def test_a_blocked_night_reaches_the_webhook_and_the_mail_server_and_a_good_one_the_heartbeat(
    graph, informat_server, synthetic, entra_env, capsys, cli, tmp_path, monkeypatch
):
    (tmp_path / "ca").mkdir()
    ca = make_test_ca(tmp_path / "ca")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "smtp-geheim-42")
    with (
        WebhookReceiver(tls=ca) as hook,
        WebhookReceiver() as monitor,  # a heartbeat monitor (plain HTTP: on this machine)
        SmtpCatcher(tls=ca, users={"provisioner@school.be": "smtp-geheim-42"}) as smtp,
    ):
        notify = (
            "notify:\n"
            "  webhook:\n"
            f"    url: {hook.url('/workflows/abc')}\n"
            "    format: teams\n"
            f"    ca_file: {ca.ca_file}\n"
            "  email:\n"
            f"    smtp: {smtp.address}\n"
            "    from: provisioner@school.be\n"
            "    to: [ict@school.be]\n"
            "    username: provisioner@school.be\n"
            "    password: ${TEST_SMTP_PASSWORD}\n"
            f"    ca_file: {ca.ca_file}\n"
            f"  heartbeat: {monitor.url('/ping/night')}\n"
        )
        assert cli(["run", "--config", str(entra_env(informat_server.url, notify))]) == 0
        assert [r.path for r in monitor.requests] == ["/ping/night"]  # a ping
        assert not hook.requests and not smtp.messages  # and nothing to tell

        day2 = copy.deepcopy(synthetic)
        day2.rows["Lln"] = day2.rows["Lln"][1::4]
        with InformatServer(day2, today=REFERENCE_DAY) as server:
            config = entra_env(server.url, notify)
            assert cli(["run", "--config", str(config)]) == 2
        folder = runs_in(config)[-1]
        (card,) = hook.posts()
        (mail,) = smtp.messages
        assert len(monitor.requests) == 1  # no ping after a blocked night
    text = json.dumps(card.json)
    assert card.path == "/workflows/abc" and "AdaptiveCard" in text
    assert "max_disable" in text and str(folder / "plan.json") in text
    body = mail.body
    assert "BLOCKED" in mail.message["Subject"]
    assert f"{folder / 'plan.json'} --approve leavers,drop" in body
    assert "max_disable" in body and str(folder) in body
    assert "smtp-geheim-42" not in mail.data.decode() and SECRET not in mail.data.decode()


def test_notify_test_sends_by_every_channel_and_says_what_failed(tmp_path, capsys):
    config = tmp_path / "provisioner.yaml"
    (tmp_path / "snap").mkdir()
    source = "source:\n  informat:\n    snapshot: snap\n    instelnrs: ['030569']\n"
    with WebhookReceiver() as hook:
        config.write_text(
            source + f"notify:\n  webhook: {{url: '{hook.url('/t')}', format: json}}\n"
        )
        assert main(["notify", "--config", str(config), "--test"]) == 0
        assert "delivered by every channel" in capsys.readouterr().out
        (post,) = hook.posts()
    assert post.json["outcome"] == "nothing"
    config.write_text(source + "notify:\n  webhook: {url: 'http://127.0.0.9:9/t'}\n")
    assert main(["notify", "--config", str(config), "--test"]) == 1
    assert "not delivered: could not send the webhook" in capsys.readouterr().err


def test_a_night_reads_what_changed_since_the_last_and_full_read_reads_everything(
    graph, informat_server, entra_env, capsys, cli
):
    """Each night keeps its read of the directory; the next reads only what changed since, and
    ``run --full-read`` everything (as the run folder's log says)."""
    config = entra_env(informat_server.url)

    def read_of_night(*options: str) -> str:
        assert cli(["run", "--config", str(config), *options]) == 0
        log_lines = (runs_in(config)[-1] / "log.jsonl").read_text().splitlines()
        reads = [
            line["message"]
            for line in map(json.loads, log_lines)
            if line["message"].startswith("read Entra ID")
        ]
        assert len(reads) == 1, reads
        return reads[0]

    assert read_of_night() == "read Entra ID in full: no earlier read is kept (no state store yet)"
    assert read_of_night() == "read Entra ID in full: no earlier read is kept"
    assert read_of_night().startswith("read Entra ID incrementally:")
    assert read_of_night("--full-read") == "read Entra ID in full: a full read was asked for"
    assert read_of_night().startswith("read Entra ID incrementally:")
