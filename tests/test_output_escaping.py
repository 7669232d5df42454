"""Source data cannot bend what people read: line breaks, right-to-left overrides and other
control characters in a class code or a name are written out in the text plan, the HTML report,
validate and explain; the HTML report is written owner-only and never through a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.text import hidden_characters, visible
from tests.test_cli_mapping import sample_with_mappings

RLO = "\u202e"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("1A\nBLOCKED: fake", "1A\\nBLOCKED: fake"),
        ("a\r\tb", "a\\r\\tb"),
        (f"Jan {RLO}sreteeP", "Jan <U+202E>sreteeP"),
        ("\u2066x\u2069\u200f", "<U+2066>x<U+2069><U+200F>"),
        ("nul\x00 esc\x1b[31m del\x7f", "nul\\x00 esc\\x1b[31m del\\x7f"),
        ("next line\x85 csi\x9b", "next line\\x85 csi\\x9b"),
        ("line\u2028para\u2029", "line<U+2028>para<U+2029>"),
        ("lone \udc80", "lone <U+DC80>"),
    ],
)
def test_visible_writes_out_what_would_change_the_display(raw, shown):
    assert visible(raw) == shown
    assert visible(shown) == shown  # once is enough: nothing more to write out
    assert shown.isprintable()


def test_visible_keeps_names_in_every_script():
    names = "Çelik Zoë Ødegård Łukasz Ελένη Юлия محمد 李 José-María O'Brien \\n"
    assert visible(names) is names
    assert hidden_characters(names) == []
    assert hidden_characters(f"a\nb\n{RLO}") == ["\\n", "<U+202E>"]


def injected_sample(tmp_path: Path) -> Path:
    """The sample where every pupil's class code carries a line break and a fake block, and
    every display name a right-to-left override."""
    config = sample_with_mappings(tmp_path)
    pupils = tmp_path / "mappings" / "pupils.yaml"
    text = pupils.read_text()
    for old, new in (
        (
            '"{{ Lln.Klascode }}"]',
            "\"{{ Lln.Klascode ~ '\\\\nBLOCKED: fake' }}\"]",
        ),
        (
            'displayName: "{{ Lln.Voornaam }} {{ Lln.Naam }}"',
            'displayName: "{{ Lln.Voornaam }} \\u202e{{ Lln.Naam }}"',
        ),
        (
            'department: "{{ Lln.Klascode }}"',
            "department: \"{{ Lln.Klascode ~ '\\\\n      why: forged' }}\"",
        ),
    ):
        assert old in text
        text = text.replace(old, new)
    pupils.write_text(text)
    return config


def test_text_plan_and_html_report_write_out_injected_characters(tmp_path, capsys):
    config = injected_sample(tmp_path)
    report = tmp_path / "plan.html"
    assert main(["plan", "--config", str(config), "--details", "--report", str(report)]) == 2
    out = capsys.readouterr().out
    assert RLO not in out and "\r" not in out
    assert "<U+202E>" in out
    assert "\\nBLOCKED: fake" in out and "\\n      why: forged" in out
    lines = out.splitlines()
    assert not any(line.startswith("BLOCKED") for line in lines)
    assert not any(line.strip() == "why: forged" for line in lines)
    page = report.read_text(encoding="utf-8")
    assert RLO not in page
    assert "&lt;U+202E&gt;" in page
    assert "\nBLOCKED: fake" not in page and "\\nBLOCKED: fake" in page
    assert "\\n      why: forged" in page


def test_validate_and_explain_write_out_injected_characters(tmp_path, capsys):
    config = injected_sample(tmp_path)
    assert main(["validate", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["explain", "--config", str(config), "Leroy"]) == 0
    out = capsys.readouterr().out
    assert RLO not in out
    assert "<U+202E>Leroy" in out
    assert "\\n      why: forged" in out
    assert "BLOCKED: fake" in out
    assert not any(line.startswith("BLOCKED") for line in out.splitlines())


def test_the_report_replaces_a_wider_file_with_an_owner_only_one(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    report = tmp_path / "plan.html"
    report.write_text("an older report")
    report.chmod(0o644)
    assert main(["plan", "--config", str(config), "--report", str(report)]) == 2
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert report.read_text().startswith("<!doctype html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".plan.html")] == []


def test_the_report_is_never_written_through_a_link(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "plan.html"
    os.symlink(victim, link)
    assert main(["plan", "--config", str(config), "--report", str(link)]) == 1
    err = capsys.readouterr().err
    assert f"{link} is a symbolic link; refusing to write through it" in err
    assert victim.read_text() == "keep me"
    assert link.is_symlink()


def test_every_control_bidi_separator_and_surrogate_code_point_is_written_out():
    import unicodedata

    from provisioner.text import BIDI_CONTROLS

    for point in range(0x110000):
        char = chr(point)
        hidden = unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs") or char in BIDI_CONTROLS
        assert (visible(char) != char) is hidden, hex(point)


def test_an_error_message_with_hidden_characters_is_printed_visibly(tmp_path, capsys) -> None:
    """An error that quotes a name (here a file's) cannot add lines or turn text around."""
    from provisioner.cli import main

    name = tmp_path / "x\nerror: BLOCKED\u202e.yaml"
    assert main(["validate", "--config", str(name)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\u202e" not in err
    assert "x\\nerror: BLOCKED<U+202E>.yaml" in err
