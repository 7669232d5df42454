"""Initial passwords and their hand-out sheets: strength, the escrow, private files, cells that a
spreadsheet or a browser shows as they are."""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
import stat

import pytest

from provisioner.config import load_config
from provisioner.errors import ConfigError, ProvisionerError
from provisioner.passwords import (
    MIN_ENTROPY_BITS,
    PENDING,
    UNKNOWN,
    WORDS,
    Handout,
    HandoutSheets,
    PasswordConfig,
    SheetError,
    csv_cell,
    entropy_bits,
    generate,
    handout_group,
    write_sheets,
)

WHEN = dt.datetime(2026, 9, 1, 7, 30)
CLASS = "Leerlingen / 030569 / 1A"


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        (PasswordConfig(), r"^([A-Z][a-z]{2,6}-){4}\d{2}$"),
        (PasswordConfig(style="random", length=14), r"^[A-Za-z0-9]{14}$"),
    ],
)
def test_passwords_are_readable_or_random_and_complex_enough_for_ad(config, pattern):
    made = {generate(config) for _ in range(200)}
    assert len(made) == 200  # not a fixed value, and no repeats at this size
    for password in made:
        assert re.match(pattern, password)
        assert any(c.isupper() for c in password) and any(c.isdigit() for c in password)
        assert any(c.islower() for c in password)
        assert not set("Il1O0o") & set(password) or config.style == "words"


def test_the_default_passwords_carry_at_least_40_bits():
    """Four words from the list and a two-digit number: 4 * log2(702) + log2(90) ≈ 44 bits."""
    default = PasswordConfig()
    assert (default.style, default.length) == ("words", 4)
    expected = default.length * math.log2(len(WORDS)) + math.log2(90)
    assert entropy_bits("words", 4) == pytest.approx(expected)
    assert entropy_bits("words", 4) >= MIN_ENTROPY_BITS
    assert entropy_bits("words", 3) < MIN_ENTROPY_BITS  # why the default went up to four
    # Random: 56 unambiguous characters, 10 of them, every one with upper, lower and a digit.
    assert 57 < entropy_bits("random", 10) < 10 * math.log2(56)


def test_the_word_list_is_long_unique_and_readable():
    assert len(WORDS) >= 512  # 9 bits a word at least
    assert len(set(WORDS)) == len(WORDS)
    for word in WORDS:
        # a-z only, short, no "y" (ij or y?), not starting with i (a capital I looks like l).
        assert re.fullmatch(r"[a-z]{3,7}", word), word
        assert "y" not in word and not word.startswith("i"), word
    rude = {"kut", "lul", "kont", "pik", "hoer", "slet", "geil", "eikel", "sukkel", "dom", "dik"}
    rude |= {"lelijk", "dood", "moord", "bom", "wapen", "naakt", "seks", "drugs", "bier", "wijn"}
    assert not rude & set(WORDS)


@pytest.mark.parametrize(("style", "length"), [("words", 3), ("random", 9), ("words", 2)])
def test_passwords_easier_to_guess_than_40_bits_are_refused(style, length):
    with pytest.raises(ValueError, match=r"at least \d+ for style .* bits"):
        PasswordConfig(style=style, length=length)


def test_too_short_passwords_are_refused():
    with pytest.raises(ValueError, match="at least 10"):
        PasswordConfig(style="random", length=8)


def test_a_configuration_with_three_words_is_refused_with_its_line(tmp_path):
    config = tmp_path / "provisioner.yaml"
    (tmp_path / "snap").mkdir()
    config.write_text(
        "source:\n  informat:\n    snapshot: snap\n    instelnrs: ['030569']\n"
        "state: state.db\npasswords:\n  style: words\n  length: 3\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    message = str(refused.value)
    assert "provisioner.yaml:" in message and "length must be at least 4" in message


def test_sheets_are_private_and_escaped(tmp_path):
    handouts = [
        Handout("jan.peeters", "Jan <Peeters>", CLASS, "Boom-Vis-Zon-Kat-12"),
        Handout("an.smet", "An Smet", CLASS, "Kat-Uil-Vos-Pen-34"),
        Handout("els.claes", "Els Claes", "Personeel / 030569", "Zee-Dak-Pen-Bal-56"),
    ]
    paths = write_sheets(handouts, tmp_path / "sheets", WHEN)
    assert [p.name for p in paths] == [
        "passwords-20260901-073000.html",
        "passwords-20260901-073000.csv",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    assert stat.S_IMODE((tmp_path / "sheets").stat().st_mode) == 0o700
    html = paths[0].read_text()
    assert html.count('<section class="page">') == 2
    assert "Jan &lt;Peeters&gt;" in html and "<Peeters>" not in html
    rows = list(csv.DictReader(paths[1].open(encoding="utf-8")))
    assert {r["username"]: (r["status"], r["password"]) for r in rows} == {
        "jan.peeters": ("set", "Boom-Vis-Zon-Kat-12"),
        "an.smet": ("set", "Kat-Uil-Vos-Pen-34"),
        "els.claes": ("set", "Zee-Dak-Pen-Bal-56"),
    }
    assert write_sheets([], tmp_path / "none", WHEN) == []


def test_csv_cells_cannot_be_formulas_and_hidden_characters_show(tmp_path):
    hostile = [
        Handout("a.b", '=HYPERLINK("http://evil.invalid","klik")', CLASS, "Boom-Vis-Zon-Kat-12"),
        Handout("c.d", "+31 612", "@SUM(A1)", "Kat-Uil-Vos-Pen-34"),
        Handout("e.f", "-2+3", "\tTab", "Zee-Dak-Pen-Bal-56"),
        Handout("g.h", "Ann\u202eevil", "1A\r\n2B", "Uil-Dak-Pen-Bal-78"),
    ]
    html_path, csv_path = write_sheets(hostile, tmp_path / "sheets", WHEN)
    rows = list(csv.reader(csv_path.open(encoding="utf-8")))[1:]
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
            assert not re.search("[\x00-\x1f\u202a-\u202e\u2066-\u2069]", cell), row
    cells = {cell for row in rows for cell in row}
    assert '\'=HYPERLINK("http://evil.invalid","klik")' in cells
    assert "'+31 612" in cells and "'@SUM(A1)" in cells and "'-2+3" in cells
    assert "'\\tTab" in cells and "Ann<U+202E>evil" in cells and "1A\\r\\n2B" in cells
    html = html_path.read_text(encoding="utf-8")
    assert "\u202e" not in html and "Ann&lt;U+202E&gt;evil" in html and "\r" not in html
    assert csv_cell("Peeters") == "Peeters"  # ordinary text is left alone


def test_the_escrow_is_on_disk_before_begin_returns_and_completed_after(tmp_path):
    sheets = tmp_path / "sheets"
    pending = [
        Handout("jan.peeters", "Jan Peeters", CLASS, "Boom-Vis-Zon-Kat-12", "pending"),
        Handout("an.smet", "An Smet", CLASS, "Kat-Uil-Vos-Pen-34", "pending"),
        Handout("els.claes", "Els Claes", CLASS, "Zee-Dak-Pen-Bal-56", "pending"),
    ]
    escrow = HandoutSheets.begin(pending, sheets, WHEN)
    # A run that dies now leaves this file: every password that may be set, marked pending.
    assert sorted(p.name for p in sheets.iterdir()) == ["passwords-20260901-073000.csv"]
    assert stat.S_IMODE(escrow.csv_path.stat().st_mode) == 0o600
    rows = list(csv.DictReader(escrow.csv_path.open(encoding="utf-8")))
    assert {r["password"] for r in rows} == {h.password for h in pending}
    assert {r["status"] for r in rows} == {PENDING}
    # Completed: set, unknown (the account was already there), failed left off.
    done = [
        Handout("jan.peeters", "Jan Peeters", CLASS, "Boom-Vis-Zon-Kat-12", "set"),
        Handout("an.smet", "An Smet", CLASS, "Kat-Uil-Vos-Pen-34", "unknown"),
    ]
    paths = escrow.complete(done)
    assert paths == [escrow.html_path, escrow.csv_path]
    rows = list(csv.DictReader(escrow.csv_path.open(encoding="utf-8")))
    assert [(r["username"], r["status"], r["password"]) for r in rows] == [
        ("an.smet", UNKNOWN, ""),
        ("jan.peeters", "set", "Boom-Vis-Zon-Kat-12"),
    ]
    html = escrow.html_path.read_text(encoding="utf-8")
    assert "Boom-Vis-Zon-Kat-12" in html and "Kat-Uil-Vos-Pen-34" not in html
    assert "password unknown: use `provisioner password reset`" in html
    assert "Zee-Dak-Pen-Bal-56" not in html + escrow.csv_path.read_text()
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)


def test_an_escrow_of_which_nothing_was_set_is_removed(tmp_path):
    pending = [Handout("a.b", "A B", CLASS, "Boom-Vis-Zon-Kat-12", "pending")]
    escrow = HandoutSheets.begin(pending, tmp_path, WHEN)
    assert escrow.complete([]) == []
    assert list(tmp_path.iterdir()) == []


def test_a_planted_link_where_the_sheet_goes_is_not_written_through(tmp_path):
    sheets = tmp_path / "sheets"
    sheets.mkdir(mode=0o700)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (sheets / "passwords-20260901-073000.csv").symlink_to(outside)
    (sheets / "passwords-20260901-073000-2.html").symlink_to(outside)
    handouts = [Handout("a.b", "A B", CLASS, "Boom-Vis-Zon-Kat-12")]
    paths = write_sheets(handouts, sheets, WHEN)
    assert [p.name for p in paths] == [
        "passwords-20260901-073000-3.html",
        "passwords-20260901-073000-3.csv",
    ]
    assert outside.read_text() == "keep me"
    assert "Boom-Vis-Zon-Kat-12" in paths[1].read_text()


def test_two_runs_in_one_second_get_their_own_sheets(tmp_path):
    first = write_sheets([Handout("a.b", "A B", CLASS, "Boom-Vis-Zon-Kat-12")], tmp_path, WHEN)
    second = write_sheets([Handout("c.d", "C D", CLASS, "Kat-Uil-Vos-Pen-34")], tmp_path, WHEN)
    assert second[1].name == "passwords-20260901-073000-2.csv"
    assert "Boom-Vis-Zon-Kat-12" in first[1].read_text()
    assert "Kat-Uil-Vos-Pen-34" in second[1].read_text()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_sheets_directory_others_can_write_to_is_refused(tmp_path, mode):
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    sheets.chmod(mode)
    with pytest.raises(ConfigError, match=r"writable by others .*chmod 700 .* no password was set"):
        HandoutSheets.begin([Handout("a.b", "A B", CLASS, "Boom-Vis-Zon-Kat-12")], sheets, WHEN)
    assert list(sheets.iterdir()) == []


def test_a_sheets_directory_that_is_a_link_or_a_file_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    line = [Handout("a.b", "A B", CLASS, "Boom-Vis-Zon-Kat-12")]
    with pytest.raises(ConfigError, match="symbolic link"):
        HandoutSheets.begin(line, tmp_path / "link", WHEN)
    (tmp_path / "file").write_text("")
    with pytest.raises(ProvisionerError, match="no password was set"):
        HandoutSheets.begin(line, tmp_path / "file", WHEN)
    assert list(real.iterdir()) == []


def test_a_full_disk_leaves_no_half_escrow(tmp_path):
    """RLIMIT_FSIZE makes the write fail as a full disk does (EFBIG instead of ENOSPC)."""
    import resource
    import signal

    line = [Handout("a.b", "A B" * 200, CLASS, "Boom-Vis-Zon-Kat-12", "pending")]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
    try:
        with pytest.raises(SheetError, match="no password was set and nothing was changed"):
            HandoutSheets.begin(line, tmp_path, WHEN)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert list(tmp_path.iterdir()) == []


def test_apply_and_password_reset_put_an_account_on_the_same_sheet():
    """One rule for both: the OU path where the directory has OUs, else the department."""
    assert handout_group(["Leerlingen", "030569", "1A"], "1A") == "Leerlingen / 030569 / 1A"
    assert handout_group(None, "1A") == "1A"  # Entra ID: no OUs
    assert handout_group([], None) == "(root)"
