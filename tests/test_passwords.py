"""Initial passwords and their hand-out sheets."""

from __future__ import annotations

import datetime as dt
import re
import stat

import pytest

from provisioner.passwords import Handout, PasswordConfig, generate, write_sheets


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        (PasswordConfig(), r"^[A-Z][a-z]+-[A-Z][a-z]+-[A-Z][a-z]+-\d{2}$"),
        (PasswordConfig(style="random", length=14), r"^[A-Za-z0-9]{14}$"),
    ],
)
def test_passwords_are_readable_or_random_and_complex_enough_for_ad(config, pattern):
    made = {generate(config) for _ in range(200)}
    assert len(made) > 190  # not a fixed value
    for password in made:
        assert re.match(pattern, password)
        assert any(c.isupper() for c in password) and any(c.isdigit() for c in password)
        assert not set("Il1O0o") & set(password) or config.style == "words"


def test_too_short_passwords_are_refused():
    with pytest.raises(ValueError, match="at least 10"):
        PasswordConfig(style="random", length=8)


def test_sheets_are_private_and_escaped(tmp_path):
    handouts = [
        Handout("jan.peeters", "Jan <Peeters>", "Leerlingen / 030569 / 1A", "Boom-Vis-Zon-12"),
        Handout("an.smet", "An Smet", "Leerlingen / 030569 / 1A", "Kat-Uil-Vos-34"),
        Handout("els.claes", "Els Claes", "Personeel / 030569", "Zee-Dak-Pen-56"),
    ]
    paths = write_sheets(handouts, tmp_path / "sheets", dt.datetime(2026, 9, 1, 7, 30))
    assert [p.name for p in paths] == [
        "passwords-20260901-073000.html",
        "passwords-20260901-073000.csv",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    html = paths[0].read_text()
    assert html.count('<section class="page">') == 2
    assert "Jan &lt;Peeters&gt;" in html and "<Peeters>" not in html
    assert write_sheets([], tmp_path / "none", dt.datetime(2026, 9, 1)) == []


def test_apply_and_password_reset_put_an_account_on_the_same_sheet():
    """One rule for both: the OU path where the directory has OUs, else the department."""
    from provisioner.passwords import handout_group

    assert handout_group(["Leerlingen", "030569", "1A"], "1A") == "Leerlingen / 030569 / 1A"
    assert handout_group(None, "1A") == "1A"  # Entra ID: no OUs
    assert handout_group([], None) == "(root)"
