"""What a coordinator copies from the guides must work as written: the systemd units pass
``systemd-analyze verify``, the Windows task definition is well-formed Task Scheduler XML with the
command line the guide gives, every ``provisioner …`` command in the README and the guides names
commands and flags that exist, and the wheel installs by its own name with its extras."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from provisioner.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SERVICE = EXAMPLES / "systemd" / "provisioner.service"
TIMER = EXAMPLES / "systemd" / "provisioner.timer"
CRON = EXAMPLES / "cron" / "provisioner"
TASK_XML = EXAMPLES / "windows" / "provisioner-task.xml"
REGISTER_PS1 = EXAMPLES / "windows" / "register-provisioner-task.ps1"
GUIDES = [
    ROOT / "docs" / name
    for name in ("getting-started.md", "operations.md", "notifications.md", "state.md")
]
TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
NIGHTLY_ARGUMENTS = "--log-format json run --config"
IN_CI = os.environ.get("CI") == "true"


# -- systemd ---------------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (a key may repeat, as LoadCredential= does)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        message = (
            "systemd-analyze is not installed (Debian package systemd; scripts/install-systemd "
            "installs it as root)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    """verify checks every directive and refuses an ExecStart that does not exist: the unit is
    copied with its command pointed at a stand-in the test makes. Any warning about the units
    (an unknown or misspelt key, a bad calendar spec) fails the test, not only a refusal."""
    analyze = systemd_analyze()
    command = tmp_path / "provisioner"
    command.write_text("#!/bin/sh\nexit 0\n")
    command.chmod(0o755)
    service_text = SERVICE.read_text()
    assert "ExecStart=/usr/local/bin/provisioner " in service_text
    (tmp_path / SERVICE.name).write_text(
        service_text.replace("=/usr/local/bin/provisioner ", f"={command} ").replace(
            "=-/usr/local/bin/provisioner ", f"=-{command} "
        )
    )
    shutil.copy(TIMER, tmp_path / TIMER.name)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    about_ours = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "provisioner" in line or str(tmp_path) in line
    ]
    assert done.returncode == 0, done.stdout + done.stderr
    assert about_ours == []


def test_the_service_is_hardened_and_reads_its_secrets_from_credentials():
    service = unit_settings(SERVICE)
    for key, value in {
        "Type": "oneshot",
        "User": "provisioner",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "ReadWritePaths": "/var/lib/provisioner",
        "StateDirectory": "provisioner",
        "SuccessExitStatus": "2",
    }.items():
        assert service.get(key) == [value], key
    credentials = dict(entry.split(":", 1) for entry in service["LoadCredential"])
    assert set(credentials) == {"informat-password", "ad-password"}
    (exec_start,) = service["ExecStart"]
    assert exec_start.split()[1:5] == ["--log-format", "json", "run", "--config"]
    (backup,) = service["ExecStartPre"]
    assert backup.split()[1:4] == ["state", "backup", "--config"]
    timer = unit_settings(TIMER)
    assert timer["OnCalendar"] == ["*-*-* 02:30:00"]
    assert timer["Persistent"] == ["true"]
    assert timer["RandomizedDelaySec"] == ["15min"]
    assert timer["WantedBy"] == ["timers.target"]


def test_the_cron_line_runs_the_nightly_command_as_its_own_user():
    backup, night = [
        shlex.split(line)
        for line in CRON.read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    for line, at, arguments in (
        (backup, ("20", "2"), "state backup --config"),
        (night, ("30", "2"), NIGHTLY_ARGUMENTS),
    ):
        minute, hour, day, month, weekday, user, command, *rest = line
        assert (minute, hour, day, month, weekday) == (*at, "*", "*", "*")
        assert user == "provisioner"
        assert Path(command).name == "provisioner"
        assert " ".join(rest).startswith(arguments)


# -- Windows Task Scheduler ------------------------------------------------------------------------


def test_the_task_xml_is_task_scheduler_xml_with_the_guides_command_line():
    tree = ET.parse(TASK_XML)  # well-formed, or this raises
    task = tree.getroot()
    ns = {"t": TASK_NAMESPACE}
    assert task.tag == f"{{{TASK_NAMESPACE}}}Task"
    assert task.get("version") == "1.2"
    trigger = task.find("t:Triggers/t:CalendarTrigger", ns)
    assert trigger is not None
    assert trigger.findtext("t:StartBoundary", namespaces=ns).endswith("T02:30:00")
    assert trigger.findtext("t:ScheduleByDay/t:DaysInterval", namespaces=ns) == "1"
    principal = task.find("t:Principals/t:Principal", ns)
    assert principal.findtext("t:RunLevel", namespaces=ns) == "LeastPrivilege"
    settings = task.find("t:Settings", ns)
    assert settings.findtext("t:StartWhenAvailable", namespaces=ns) == "true"
    assert settings.findtext("t:MultipleInstancesPolicy", namespaces=ns) == "IgnoreNew"
    action = task.find("t:Actions/t:Exec", ns)
    command = action.findtext("t:Command", namespaces=ns)
    arguments = action.findtext("t:Arguments", namespaces=ns)
    assert command.endswith("\\Scripts\\provisioner.exe")
    assert arguments.startswith(NIGHTLY_ARGUMENTS)
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert f'"{command}" {arguments}' in operations  # the command line the guide shows


def test_the_powershell_script_registers_that_xml():
    script = REGISTER_PS1.read_text()
    assert "Join-Path $PSScriptRoot 'provisioner-task.xml'" in script
    assert "Register-ScheduledTask" in script and "Xml      = $task.OuterXml" in script
    assert TASK_XML.name == "provisioner-task.xml"


def test_the_guide_shows_the_example_files_as_they_are():
    """The guide includes each file whole, so that what is copied from the page and what is
    copied from examples/ are the same."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    for example in (SERVICE, TIMER, CRON, TASK_XML, REGISTER_PS1):
        assert example.read_text().strip() in operations, example


# -- the commands in the README and the guides -----------------------------------------------------

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
WINDOWS_LANGUAGES = {"powershell", "ps1", "pwsh", "cmd", "bat"}
WRAPPERS = {"sudo", "&", "exec", "time", "runuser"}
ENDS_A_COMMAND = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1"}
FENCE = re.compile(r"^```(\w*)\s*$")


def command_lines(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, words)`` of every command line in the shell and PowerShell blocks."""
    found: list[tuple[int, list[str]]] = []
    language: str | None = None
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if fence := FENCE.match(line.strip()):
            language = None if language is not None else fence.group(1).lower()
            pending = ""
            continue
        if language not in SHELL_LANGUAGES | WINDOWS_LANGUAGES:
            continue
        if not pending:
            start = number
        continuation = "\\" if language in SHELL_LANGUAGES else "^" if language == "cmd" else "`"
        if line.rstrip().endswith(continuation):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip().removeprefix("$ ").removeprefix("PS> ")
        pending = ""
        lexer = shlex.shlex(text, posix=language in SHELL_LANGUAGES, punctuation_chars=False)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = [w.strip("\"'") for w in lexer]
        except ValueError as exc:
            raise AssertionError(f"{path}:{number}: cannot split {text!r}: {exc}") from None
        found.append((start, words))
    return found


def provisioner_arguments(words: list[str]) -> list[str] | None:
    """The arguments after the ``provisioner`` command of one line, or None if it runs another
    command (``useradd … provisioner`` names the user, not the command)."""
    i = 0
    while i < len(words):
        if words[i] in WRAPPERS or ("=" in words[i] and not words[i].startswith("-")):
            i += 1
        elif words[i] in ("-u", "--user"):
            i += 2
        elif words[i] == "--":
            i += 1
        else:
            break
    if i >= len(words) or re.split(r"[\\/]", words[i])[-1] not in {
        "provisioner",
        "provisioner.exe",
    }:
        return None
    arguments = []
    for word in words[i + 1 :]:
        if word in ENDS_A_COMMAND or word.startswith((">", "2>")):
            break
        arguments.append(word)
    return arguments


PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")
PLACEHOLDER_VALUE = "1"


def command_of(arguments: list[str]) -> str | None:
    """The command word after the global options (``--log-format json``, ``-v``)."""
    words = iter(arguments)
    for word in words:
        if word == "--log-format":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def parse_error(arguments: list[str]) -> str | None:
    """What argparse says about *arguments*, or None when the parser accepts them."""
    parser = build_parser()
    # A placeholder in capitals (N, FILE, QUERY) stands for a value: one that fits any type.
    arguments = [PLACEHOLDER_VALUE if PLACEHOLDER.fullmatch(a) else a for a in arguments]
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(arguments)
        except SystemExit as exc:
            return None if exc.code == 0 else said.getvalue().strip().splitlines()[-1]
    return None


DOCUMENTS = [ROOT / "README.md", *GUIDES]
INLINE_COMMAND = re.compile(r"`((?:[\w/.-]*/)?provisioner(?:\.exe)? [^`]+)`")


def inline_commands(path: Path) -> list[tuple[int, list[str]]]:
    """``provisioner …`` in the prose's code spans. Prose leaves things out (``provisioner run``
    without its --config, ``[--json]`` for an optional flag, ``…`` for a value), so only what is
    there is checked: see :func:`prose_error`."""
    found = []
    in_block = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line.strip()):
            in_block = not in_block
            continue
        if in_block:
            continue
        for match in INLINE_COMMAND.finditer(line):
            try:
                words = shlex.split(match.group(1))
            except ValueError:
                continue  # a span cut by the line's end
            found.append((number, [w.strip("[]") for w in words if w not in ("…", "...")]))
    return found


def prose_error(arguments: list[str]) -> str | None:
    """As :func:`parse_error`, but a required argument the prose left out is not an error: a
    missing ``--config`` is supplied, and a missing positional is let go."""
    if "--config" not in arguments and command_of(arguments) is not None:
        arguments = [*arguments, "--config", "provisioner.yaml"]
    error = parse_error(arguments)
    return None if error and "the following arguments are required" in error else error


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_the_commands_in_the_documents_exist(document):
    assert document.exists(), document
    checked, wrong = 0, []
    for number, words in command_lines(document):
        arguments = provisioner_arguments(words)
        if arguments is None:
            continue
        checked += 1
        if error := parse_error(arguments):
            wrong.append(f"{document.name}:{number}: provisioner {' '.join(arguments)}: {error}")
    for number, words in inline_commands(document):
        arguments = provisioner_arguments(words)
        if arguments is not None and (error := prose_error(arguments)):
            wrong.append(f"{document.name}:{number}: `provisioner {' '.join(arguments)}`: {error}")
    assert wrong == []
    assert checked >= 3, f"{document.name}: no provisioner commands found; is the parsing wrong?"


def test_the_scheduled_command_lines_exist():
    """The units, the cron line and the task run the nightly command; its global flags exist."""
    (exec_start,) = unit_settings(SERVICE)["ExecStart"]
    task = ET.parse(TASK_XML).getroot()
    ns = {"t": TASK_NAMESPACE}
    arguments = task.findtext("t:Actions/t:Exec/t:Arguments", namespaces=ns)
    cron = next(line for line in CRON.read_text().splitlines() if line.startswith("30 2"))
    for words in (
        shlex.split(exec_start),
        shlex.split(unit_settings(SERVICE)["ExecStartPre"][0].lstrip("-")),
        shlex.split(cron)[6:],
        ["provisioner.exe", *arguments.split()],
    ):
        found = provisioner_arguments(words)
        assert found is not None
        assert found[:4] == ["--log-format", "json", "run", "--config"] or found[:3] == [
            "state",
            "backup",
            "--config",
        ]
        assert parse_error(found) is None


def test_the_command_check_catches_a_wrong_flag(tmp_path):
    """The check above can fail: a misspelt flag, an unknown command and a wrapper are told
    apart from the real thing."""
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\n"
        "sudo -u provisioner provisioner plan --confg x.yaml   # misspelt\n"
        "useradd --system provisioner\n"
        "provisioner apply --config x.yaml \\\n    --approve 'end of year'\n"
        "provisioner frobnicate\n"
        "provisioner --version\n"
        "```\n"
        "```powershell\n"
        '& "C:\\Program Files\\provisioner\\venv\\Scripts\\provisioner.exe" history --config C:\\x.yaml --jsn\n'
        "```\n"
    )
    errors = {
        number: parse_error(arguments)
        for number, words in command_lines(page)
        if (arguments := provisioner_arguments(words)) is not None
    }
    assert set(errors) == {2, 4, 6, 7, 10}  # not the useradd line
    assert "required: --config" in errors[2]
    assert errors[4] is None and errors[7] is None
    assert "invalid choice: 'frobnicate'" in errors[6]
    assert "--jsn" in errors[10]
    prose = tmp_path / "prose.md"
    prose.write_text(
        "Run `provisioner run` nightly, read `provisioner history [--json] --last N`, never\n"
        "`provisioner history --jsn` or `provisioner nightly --config …`.\n"
    )
    said = [
        prose_error(arguments)
        for _, words in inline_commands(prose)
        if (arguments := provisioner_arguments(words)) is not None
    ]
    assert said[:2] == [None, None]  # what prose leaves out is not an error
    assert "--jsn" in said[2] and "invalid choice: 'nightly'" in said[3]


# -- the wheel -------------------------------------------------------------------------------------

WHEELHOUSE = Path(
    os.environ.get(
        "PROVISIONER_TEST_WHEELHOUSE", Path.home() / ".cache" / "provisioner-tests" / "wheelhouse"
    )
)


def pip(*arguments: str | Path, python: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip"]
    if python is not None:
        command += ["--python", str(python)]
    return subprocess.run(
        [*command, *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def test_the_wheel_installs_by_its_own_name_with_its_extras(tmp_path):
    """The distribution is informat-provisioner (``provisioner`` on the package index is an
    unrelated package); built as a wheel and installed with [ad,entra] into a fresh venv, it gives
    the ``provisioner`` command, the extras' libraries and the package data (validate reads the
    mapping schema and the sample through the installed package, not this checkout).

    The dependencies' wheels are kept in a wheelhouse (PROVISIONER_TEST_WHEELHOUSE, by default
    ~/.cache/provisioner-tests/wheelhouse): the install runs without the index when it holds
    them all and fills it from the index once when it does not."""
    started = time.monotonic()
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "provisioner", source / "provisioner", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = pip("wheel", "--no-deps", "--quiet", "--wheel-dir", tmp_path / "dist", source)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("informat_provisioner-")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    requirement = f"{wheel}[ad,entra]"
    # --no-compile: byte-compiling the msgraph-sdk's thousands of modules is most of an install.
    install = ("install", "--quiet", "--no-compile", "--find-links", WHEELHOUSE)
    done = pip(*install, "--no-index", requirement, python=python)
    if done.returncode != 0:  # the wheelhouse lacks something: fill it from the index once
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        filled = pip("wheel", "--quiet", "--wheel-dir", WHEELHOUSE, requirement)
        assert filled.returncode == 0, filled.stderr
        done = pip(*install, "--no-index", requirement, python=python)
    assert done.returncode == 0, done.stderr

    command = venv / ("Scripts/provisioner.exe" if os.name == "nt" else "bin/provisioner")
    version = subprocess.run(
        [command, "--version"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"provisioner \d+\.\d+\.\d+\S*\n", version.stdout)
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m, ldap3, msgraph, azure.identity, provisioner;"
            "d = m.distribution('informat-provisioner');"
            "print(d.metadata['Name']);"
            "print(','.join(sorted(d.metadata.get_all('Provides-Extra'))));"
            "print(provisioner.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    name, extras, module = probe.stdout.splitlines()
    assert name == "informat-provisioner"
    assert {"ad", "entra"} <= set(extras.split(","))
    assert Path(module).is_relative_to(venv)  # the installed package, not this checkout
    validate = subprocess.run(
        [command, "validate", "--config", ROOT / "examples" / "sample.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "OK: the mappings are valid" in validate.stdout
    assert time.monotonic() - started < 120  # measured at ~25 s with a filled wheelhouse


def test_the_guides_configuration_loads_and_reads_its_secrets_from_credentials(
    tmp_path, monkeypatch
):
    """The configuration of getting-started.md, copied as it is, loads; its secrets come from
    the folder systemd names in $CREDENTIALS_DIRECTORY (the service's LoadCredential=)."""
    from provisioner.config import load_config

    text = (ROOT / "docs" / "getting-started.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "target:" in b]
    (tmp_path / "mappings").symlink_to(ROOT / "mappings")
    (tmp_path / "provisioner.yaml").write_text(block)
    config = load_config(tmp_path / "provisioner.yaml")
    assert config.state == Path("/var/lib/provisioner/state.db")
    assert config.lock.directory == Path("/var/lib/provisioner/locks")  # ReadWritePaths
    assert str(config.state.parent) in unit_settings(SERVICE)["ReadWritePaths"]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in unit_settings(SERVICE)["LoadCredential"]:
        (credentials / name.split(":", 1)[0]).write_text(f"secret of {name.split(':')[0]}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert config.source.settings.password.reveal() == "secret of informat-password"
    assert config.target.ad.password.reveal() == "secret of ad-password"


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to -."""
    found = set()
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)  # a # in code is no heading
    for heading in re.findall(r"^#+ (.+)$", prose, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_guides_links_lead_somewhere(guide):
    """Every relative link names a file that exists and, with #…, a heading it has."""
    text = guide.read_text()
    wrong = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        page = (guide.parent / path).resolve() if path else guide
        if not page.exists():
            wrong.append(f"{target}: no such file")
            continue
        if anchor and page.suffix == ".md" and anchor not in anchors(page.read_text()):
            wrong.append(f"{target}: no such heading in {page.name}")
    assert wrong == []
