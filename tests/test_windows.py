"""What Windows lacks, simulated here (CI cannot run Windows; docs/operations.md says what was
and was not tried there): POSIX-only modules absent, no ``os.geteuid``, descriptors that would
be opened in text mode without ``O_BINARY``, and redirected output in the ANSI code page."""

from __future__ import annotations

import ast
import io
import os
import pkgutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import provisioner
from provisioner import files
from provisioner.console import utf8_output
from provisioner.files import access_problems, create_private, open_private

ROOT = Path(__file__).resolve().parent.parent
POSIX_ONLY_MODULES = ("fcntl", "pwd", "grp", "termios", "tty", "resource", "syslog")


def test_every_module_imports_without_the_posix_only_modules():
    """Python on Windows has no fcntl, pwd, grp, termios, resource or syslog. Every module of
    the package must import without them (a POSIX-only call sits behind a fallback, like the
    lock's msvcrt branch), so a fresh interpreter where importing them fails imports them all."""
    modules = sorted(
        m.name
        for m in pkgutil.walk_packages(provisioner.__path__, "provisioner.")
        if m.name != "provisioner.__main__"  # runs the command
        and (not m.name.startswith("provisioner.targets.entra") or _has_entra())  # [entra]
    )
    assert "provisioner.lock" in modules and "provisioner.cli" in modules
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {POSIX_ONLY_MODULES!r}:
            sys.modules[name] = None  # import fails with ImportError, as on Windows
        for name in {modules!r}:
            importlib.import_module(name)
        print("imported", len({modules!r}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {len(modules)}"


def _has_entra() -> bool:
    try:
        import msgraph  # noqa: F401
    except ImportError:
        return False
    return True


def test_private_files_are_opened_in_binary_mode(tmp_path, monkeypatch):
    """Without O_BINARY, Windows' C library writes every LF as CR LF through a descriptor from
    os.open: a snapshot's XML (and its checksum) would change on disk. Every os.open of a
    private file carries the flag; here a stand-in value is recorded and stripped again."""
    windows_binary = 1 << 29  # not an open flag on Linux; stands in for O_BINARY (0x8000)
    seen: list[int] = []
    real_open = os.open

    def recording_open(path, flags, mode=0o777, **kwargs):
        seen.append(flags)
        return real_open(path, flags & ~windows_binary, mode, **kwargs)

    monkeypatch.setattr(files, "BINARY", windows_binary)
    monkeypatch.setattr(files.os, "open", recording_open)
    os.close(create_private(tmp_path / "new"))
    os.close(open_private(tmp_path / "kept"))
    assert len(seen) == 2
    assert all(flags & windows_binary for flags in seen)
    monkeypatch.undo()
    assert files.BINARY == getattr(os, "O_BINARY", 0) == 0  # Linux: no such mode, no change


def test_access_problems_without_geteuid(tmp_path, monkeypatch):
    """os.geteuid does not exist on Windows: the owner is not compared there (the access list
    of the folder decides), but the mode bits still are, and nothing raises AttributeError."""
    path = tmp_path / "key"
    path.write_text("x")
    path.chmod(0o644)
    monkeypatch.delattr(os, "geteuid")
    problems = access_problems(path.stat(), stat.S_IRWXG | stat.S_IRWXO, "readable by others")
    assert problems == ["readable by others (mode 0644)"]


class AnsiCodePageFile(io.TextIOWrapper):
    """A redirected stdout as Windows makes it: a file in cp1252."""

    def __init__(self, *, tty: bool = False) -> None:
        super().__init__(io.BytesIO(), encoding="cp1252")
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def written(self) -> bytes:
        self.flush()
        return self.buffer.getvalue()  # type: ignore[attr-defined]


def test_redirected_output_on_windows_is_utf8():
    """A scheduled task's output in cp1252 has no → and no Cyrillic: the first such name would
    stop the run with UnicodeEncodeError. On Windows, redirected streams become UTF-8."""
    redirected = AnsiCodePageFile()
    with pytest.raises(UnicodeEncodeError):
        redirected.write("Олена → …")
    utf8_output([redirected], windows=True)
    redirected.write("Олена → …\n")
    assert redirected.written().decode("utf-8") == "Олена → …\n"


def test_a_console_and_other_systems_are_left_alone():
    console = AnsiCodePageFile(tty=True)  # a Windows console takes Unicode by itself
    utf8_output([console], windows=True)
    assert console.encoding == "cp1252"
    elsewhere = AnsiCodePageFile()
    utf8_output([elsewhere], windows=False)
    assert elsewhere.encoding == "cp1252"


def _text_io_without_encoding(tree: ast.AST) -> list[int]:
    """Lines of ``open``/``os.fdopen``/``read_text``/``write_text`` calls in text mode that name
    no encoding."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        keywords = {k.arg for k in node.keywords}
        if "encoding" in keywords:
            continue
        if (name == "open" and isinstance(func, ast.Name)) or name == "fdopen":
            mode = node.args[1] if len(node.args) > 1 else None
            mode = next((k.value for k in node.keywords if k.arg == "mode"), mode)
            binary = isinstance(mode, ast.Constant) and "b" in str(mode.value)
            encoding_given = len(node.args) >= 4  # open(file, mode, buffering, encoding)
        elif name in ("read_text", "write_text"):
            binary = False
            encoding_given = len(node.args) >= (1 if name == "read_text" else 2)
        else:
            continue
        if not binary and not encoding_given:
            lines.append(node.lineno)
    return lines


def test_text_files_name_their_encoding():
    """Without an encoding, Python on Windows reads and writes text in the ANSI code page
    (cp1252): a configuration, mapping or log with a Cyrillic or Greek name would be misread or
    stop the run. Every text file the package opens names its encoding."""
    wrong = []
    for path in sorted((ROOT / "provisioner").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        wrong += [f"{path.relative_to(ROOT)}:{line}" for line in _text_io_without_encoding(tree)]
    assert wrong == []


def test_the_encoding_check_finds_a_file_opened_without_one():
    source = textwrap.dedent(
        """
        open(p)
        open(p, "rb")
        open(p, "w", encoding="utf-8")
        os.fdopen(fd, "w")
        path.read_text()
        path.read_text("utf-8")
        path.write_text(text)
        path.write_text(text, encoding="utf-8")
        """
    )
    assert _text_io_without_encoding(ast.parse(source)) == [2, 5, 6, 8]
