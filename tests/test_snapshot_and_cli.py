"""Snapshots (save, reload, tamper) and the ``provisioner fetch`` command end to end."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import ProgressLine, main
from provisioner.errors import SourceError
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.sources.informat.reader import Progress, read_source
from tests.conftest import INSTELNRS, PASSWORD, REFERENCE_DAY, informat_config, snapshot_config

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "provisioner.yaml"
    path.write_text("source:\n  informat:\n" + body, encoding="utf-8")
    return path


def live_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"    url: {url}\n    login: webservices@school.be\n    password: ${{TEST_PW}}\n"
        f"    schooljaar: 2025-26\n    instelnrs: {INSTELNRS}\n    referentiedatum: 15-01-2026\n"
        + extra,
    )


def test_a_saved_snapshot_reads_back_identically(server, tmp_path):
    ops = list(OPERATIONS.values())
    live = read_source(informat_config(server.url), ops, today=REFERENCE_DAY, save=tmp_path / "s")
    offline_config = snapshot_config(tmp_path / "s")
    offline = read_source(offline_config, ops)
    assert offline.answers == live.answers
    assert offline.schooljaar == "2025-26"

    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert len(manifest["answers"]) == len(ops) * len(INSTELNRS)
    assert manifest["parameters"]["schooljaar"] == "2025-26"
    text = "".join(p.read_text() for p in (tmp_path / "s").glob("manifest.json"))
    assert PASSWORD not in text and "webservices@school.be" not in text
    # Personal data of minors: owner-only permissions.
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    raw = tmp_path / "s" / "Lln" / "030569.xml"
    assert stat.S_IMODE(raw.stat().st_mode) == 0o600
    assert raw.read_bytes().startswith(b'<?xml version="1.0" encoding="utf-8"?>')


def test_a_tampered_snapshot_is_refused(server, tmp_path):
    read_source(informat_config(server.url), [operation("Lln")], save=tmp_path / "s")
    raw = tmp_path / "s" / "Lln" / "030577.xml"
    raw.write_bytes(raw.read_bytes().replace(b"<Naam>", b"<Naam>X", 1))
    config = snapshot_config(tmp_path / "s")
    with pytest.raises(SourceError, match="changed since it was saved"):
        read_source(config, [operation("Lln")])


def test_a_snapshot_without_the_asked_data_set_says_what_it_holds(server, tmp_path):
    read_source(informat_config(server.url), [operation("Lln")], save=tmp_path / "s")
    config = snapshot_config(tmp_path / "s")
    with pytest.raises(SourceError, match=r"has no Subgroepen for 030569 \(it holds: Lln"):
        read_source(config, [operation("Subgroepen")])
    wrong_year = snapshot_config(tmp_path / "s", schooljaar="2024-25")
    with pytest.raises(SourceError, match="holds schooljaar 2025-26"):
        read_source(wrong_year, [operation("Lln")])


def test_saving_over_a_directory_that_is_not_a_snapshot_is_refused(server, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "important.txt").write_text("keep me")
    with pytest.raises(SourceError, match="is not a snapshot"):
        read_source(informat_config(server.url), [operation("Lln")], save=tmp_path / "s")
    assert (tmp_path / "s" / "important.txt").read_text() == "keep me"


def test_fetch_prints_a_table_and_json(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_PW", PASSWORD)
    config = live_config(tmp_path, server.url)
    assert (
        main(["fetch", "--config", str(config), "--dataset", "Lln", "--dataset", "Subgroepen"]) == 0
    )
    table = capsys.readouterr().out
    assert "Lln" in table and "Subgroepen" in table and "030577" in table

    assert main(["fetch", "--config", str(config), "--dataset", "Lln", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert set(counts) == {"Lln"}
    assert set(counts["Lln"]) == set(INSTELNRS)
    assert all(n > 0 for n in counts["Lln"].values())


def test_fetch_save_then_fetch_from_the_snapshot(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_PW", PASSWORD)
    config = live_config(tmp_path, server.url)
    assert main(["fetch", "--config", str(config), "--save", str(tmp_path / "snap"), "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    offline = write_config(tmp_path, f"    snapshot: snap\n    instelnrs: {INSTELNRS}\n")
    assert main(["fetch", "--config", str(offline), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == live


def test_fetch_warns_about_an_empty_instelnr(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_PW", PASSWORD)
    server.accounts["beperkt@school.be"] = (PASSWORD, {"030569"})
    config = (
        live_config(tmp_path, server.url)
        .read_text()
        .replace("webservices@school.be", "beperkt@school.be")
    )
    (tmp_path / "provisioner.yaml").write_text(config)
    assert main(["fetch", "--config", str(tmp_path / "provisioner.yaml"), "--dataset", "Lln"]) == 0
    out, err = capsys.readouterr()
    assert "0 empty" in out
    assert "warning: Lln for 030577 answered with no rows" in err


def test_errors_are_one_line_with_exit_code_1_and_no_traceback(server, tmp_path):
    config = live_config(tmp_path, server.url)
    env = {"TEST_PW": "Pa55-not-this-one", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "fetch", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: Informat ")
    assert "rejected the login" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Pa55-not-this-one" not in result.stderr


def test_the_bundled_sample_snapshot_works(capsys):
    assert main(["fetch", "--config", str(ROOT / "examples" / "sample.yaml"), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert set(counts["Lln"]) == {"030569", "030577"}
    assert 200 <= sum(counts["Lln"].values()) <= 1000
    assert all(n > 0 for per_school in counts.values() for n in per_school.values())


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_and_cleared_afterwards():
    terminal = FakeTerminal()
    line = ProgressLine(2, terminal)
    line(Progress("start", "Lln", "030569"))
    line(Progress("done", "Lln", "030569", 12))
    line.clear()
    shown = terminal.getvalue()
    assert "fetching 0/2 · Lln 030569" in shown
    assert "fetching 1/2 · Lln 030569" in shown
    assert shown.endswith("\r\x1b[K")


def test_no_progress_noise_in_logs():
    log = io.StringIO()
    line = ProgressLine(1, log)
    line(Progress("done", "Lln", "030569", 12))
    line.clear()
    assert log.getvalue() == ""


def test_an_unknown_data_set_on_the_command_line_is_an_error(capsys):
    config = str(ROOT / "examples" / "sample.yaml")
    assert main(["fetch", "--config", config, "--dataset", "lln"]) == 1
    assert "unknown Informat data set 'lln' (did you mean Lln?" in capsys.readouterr().err


def test_fetch_save_without_a_folder_keeps_a_dated_snapshot_in_snapshots_dir(
    server, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TEST_PW", PASSWORD)
    config = live_config(tmp_path, server.url)
    assert main(["fetch", "--config", str(config), "--save", "--dataset", "Lln"]) == 0
    err = capsys.readouterr().err
    (snapshot,) = (tmp_path / "snapshots").iterdir()  # next to the configuration: no state store
    assert (snapshot / "manifest.json").is_file()
    assert f"saved the raw answers to {snapshot}: they hold pupils' data" in err
    assert oct((tmp_path / "snapshots").stat().st_mode & 0o777) == "0o700"
