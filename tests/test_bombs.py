"""Template bombs and answer bombs end in one clear error, fast, without the memory they ask for.

Each runs the real command in a child process limited to 1.5 GB of address space, so that a
regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.errors import SourceError
from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.reader import read_source
from tests.conftest import INSTELNRS, REFERENCE_DAY, informat_config, snapshot_config

if not sys.platform.startswith("linux"):  # address-space limits and /proc/self/status
    pytest.skip("memory-limited child processes need Linux", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample.yaml"
LIMIT = 1536 * 1024 * 1024


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


# The child limits itself and reports its own peak (VmHWM of its own address space, which starts
# anew at exec). The kernel's ru_maxrss of a forked child also counts the pages it shared with
# this test process before exec, so a large pytest process would make every child look large.
CHILD = f"""
import atexit, resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))
PEAK_FILE = sys.argv.pop(1)

def report_peak() -> None:
    with open("/proc/self/status") as status, open(PEAK_FILE, "w") as peak:
        peak.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(report_peak)
sys.argv[0] = "provisioner"
runpy.run_module("provisioner", run_name="__main__", alter_sys=True)
"""


def run_limited(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Finished:
    """``python -m provisioner ARGS`` under the memory limit, with its own peak memory."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        start = time.monotonic()
        process = subprocess.run(
            [sys.executable, "-c", CHILD, peak.name, *args],
            cwd=cwd,
            stdout=out,
            stderr=err,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})},
            check=False,
        )
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Finished(
            process.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            seconds,
            int(peak.read() or 0) / 1024,
        )


def assert_one_clear_error(result: Finished, *expected: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    (line,) = lines
    assert line.startswith("error: ")
    for part in expected:
        assert part in line, line
    return line


# -- template bombs ------------------------------------------------------------------------------

BOMBS = {
    "'x' * 10**9": ("{{ 'x' * 10**9 }}", "longer than 64 KiB (repeated 1,000,000,000 times)"),
    "set n = 10**7": (
        "{% set n = 10**7 %}{{ 'x' * n }}",
        "longer than 64 KiB (repeated 10,000,000 times)",
    ),
    "str.format width": ("{{ '{0:>1000000000}'.format(1) }}", "format width or precision"),
    "str.format nested width": ("{{ '{0:>{1}}'.format(1, 10**9) }}", "format width"),
    "% width": ("{{ '%1000000000d' % 1 }}", "%-format widths adding up to 1,000,000,000"),
    "% star width": ("{{ '%*d' % (10**9, 1) }}", "%-format width from its arguments"),
    "format filter": ("{{ '%1000000000d' | format(1) }}", "%-format widths adding up to"),
    "[0] * 10**9": ("{{ [0] * 10**9 }}", "longer than 64 KiB (repeated"),
    "range(10**9)|list": ("{{ range(10**9) | list }}", "a range of 1,000,000,000 numbers"),
    "center": ("{{ 'x' | center(10**9) }}", "center to a width of 1,000,000,000"),
    "indent": ("{{ 'x' | indent(10**9) }}", "indented to"),
    "ljust": ("{{ 'x'.ljust(10**9) }}", "ljust to a width"),
    "replace": ("{% set s = 'x' * 60000 %}{{ s | replace('x', s) }}", "(replace)"),
    "~ doubling": ("{% set s = 'x' * 40000 %}{% set s = s ~ s %}{{ s }}", "joined with ~"),
    "list of long values": ("{% set s = 'x' * 60000 %}{{ [s] * 60000 }}", "repeated 60,000"),
    "initials separator": (
        "{% set s = 'x' * 60000 %}{{ ('a ' * 30000) | initials(s) }}",
        "initials with a separator of 60,000 characters",
    ),
    "nested lists": (
        "{% set a = ['x' * 30000] %}{% set a = [a, a] %}{% set a = [a, a] %}{{ a | username }}",
        "a list or dictionary written in the template",
    ),
    "dict.fromkeys": (
        "{% set d = {}.fromkeys(range(99999), 'x' * 60000) %}{{ d.items() | list | length }}",
        "the result of fromkeys",
    ),
    "concat of a long list": (
        "{% set a = ['x' * 30000] %}{{ (a + a + a) ~ '' }}",
        "joined with +",
    ),
    "many %-format fields": (
        "{{ ('%60000d' * 1000) % (1,) }}",
        "%-format widths adding up to 120,000",
    ),
    "many format fields": (
        "{{ ('{:60000}' * 1000).format(*range(1000)) }}",
        "longer than 64 KiB (str.format)",
    ),
    "wordwrap": (
        "{% set s = 'x ' * 30000 %}{{ s | wordwrap(1, wrapstring=s) }}",
        "longer than 64 KiB (wordwrap)",
    ),
    "to_bytes": ("{{ (1).to_bytes(10**9, 'big') }}", "to_bytes of 1,000,000,000"),
    "bytes": ("{{ 'x'.encode() * 10**9 }}", "repeated 1,000,000,000 times"),
    "huge number": ("{% set n = 10**9 %}{{ 7 ** n }}", "a number too large"),
    "nested loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
        "loops more than 1,000,000 times",
    ),
    "captured loop": (
        "{% set s %}{% for i in range(100000) %}{{ 'x' * 60000 }}{% endfor %}{% endset %}x",
        "more than 1 MiB of text",
    ),
}


def sample_with_template(tmp_path: Path, template: str) -> Path:
    """The bundled sample, with *template* as every pupil's employeeType (the key on line 24, the
    template in a block scalar on line 25)."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    config = tmp_path / "sample.yaml"
    config.write_text(
        SAMPLE.read_text()
        .replace("snapshot: sample-snapshot", f"snapshot: {ROOT / 'examples' / 'sample-snapshot'}")
        .replace("mappings: ../mappings", "mappings: mappings")
    )
    pupils = tmp_path / "mappings" / "pupils.yaml"
    text = pupils.read_text()
    assert text.splitlines()[23] == "      employeeType: leerling"
    pupils.write_text(
        text.replace(
            "      employeeType: leerling\n", f"      employeeType: |-\n        {template}\n"
        )
    )
    return config


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_template_bomb_ends_in_one_clear_error(tmp_path, name):
    template, message = BOMBS[name]
    config = sample_with_template(tmp_path, template)
    result = run_limited(["validate", "--config", str(config)], cwd=tmp_path)
    assert_one_clear_error(
        result,
        "error: mappings/pupils.yaml:25: accounts.pupils.attributes.employeeType: ",
        message,
        "(person ",
    )
    assert result.seconds < 30


def test_a_template_at_the_limit_still_works(tmp_path):
    config = sample_with_template(tmp_path, "{{ ('x' * 100) | center(300) | trim }}")
    result = run_limited(["validate", "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK: the mappings are valid" in result.stdout


# -- answer bombs --------------------------------------------------------------------------------


def fetch_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        "source:\n  informat:\n"
        f"    url: {url}\n    login: webservices@school.be\n    password: ${{TEST_PW}}\n"
        f"    schooljaar: 2025-26\n    instelnrs: {INSTELNRS}\n    retries: 0\n" + extra,
        encoding="utf-8",
    )
    return config


def fetch_limited(tmp_path: Path, config: Path) -> Finished:
    return run_limited(
        ["fetch", "--config", str(config), "--dataset", "Lln"],
        cwd=tmp_path,
        env={"TEST_PW": "geheim"},
    )


def test_a_180_mb_answer_of_junk_elements_ends_early_in_small_memory(server, tmp_path):
    server.inject("junk:180", op="Lln", times=None)
    result = fetch_limited(tmp_path, fetch_config(tmp_path, server.url))
    assert_one_clear_error(
        result,
        "more than 1 MB of the answer held no complete <wsInschrijving> record",
        "(it starts with <wsReclame>, <Tekst>)",
    )
    print(f"180 MB junk answer: peak RSS {result.peak_rss_mb:.0f} MB in {result.seconds:.1f} s")
    assert result.peak_rss_mb < 200  # 48 MB measured; main reached 1,305 MB on this answer


def test_an_answer_over_the_configured_cap_is_refused(server, tmp_path):
    config = fetch_config(tmp_path, server.url, "    max_answer_mb: 0.01\n")
    result = fetch_limited(tmp_path, config)
    assert_one_clear_error(result, "the answer is larger than 0.01 MB", "max_answer_mb")


def test_the_cap_is_counted_while_downloading_when_the_size_is_not_announced(server):
    server.inject("big:10", op="Lln", times=None)
    config = informat_config(server.url, max_answer_mb=3.0)
    with pytest.raises(SourceError, match=r"larger than 3 MB"):
        read_source(config, [operation("Lln")], today=REFERENCE_DAY)
    # Without the cap the same answer is read whole: the items are well-formed.
    data = read_source(informat_config(server.url), [operation("Lln")], today=REFERENCE_DAY)
    assert len(data.records("Lln")) > 2 * 90_000  # 10 MB of ~100-byte items per school


def test_an_announced_size_over_the_cap_is_refused_before_downloading(server):
    server.inject("junk:40", op="Lln", times=None)
    config = informat_config(server.url, max_answer_mb=8.0)
    with pytest.raises(SourceError, match=r"larger than 8 MB"):
        read_source(config, [operation("Lln")], today=REFERENCE_DAY)


def test_the_cap_holds_for_a_snapshot(server, tmp_path):
    read_source(
        informat_config(server.url),
        [operation("Lln")],
        save=tmp_path / "snap",
        today=REFERENCE_DAY,
    )
    assert read_source(snapshot_config(tmp_path / "snap"), [operation("Lln")]).records("Lln")
    with pytest.raises(SourceError, match=r"snapshot Lln/030569\.xml: the answer is larger"):
        read_source(snapshot_config(tmp_path / "snap", max_answer_mb=0.01), [operation("Lln")])


@pytest.mark.parametrize("transport", ["get", "soap"])
def test_an_answer_with_a_doctype_is_an_error_not_empty_fields(server, tmp_path, transport):
    server.inject("doctype", op="Lln", times=None)
    config = fetch_config(tmp_path, server.url, f"    transport: {transport}\n")
    result = fetch_limited(tmp_path, config)
    assert_one_clear_error(result, "Informat answered with a DOCTYPE")


def test_a_doctype_after_a_long_prolog_is_still_found():
    from provisioner.sources.informat.parser import parse_answer

    op = operation("Lln")
    body = (
        b'<?xml version="1.0"?>\n<!--' + b" " * 4000 + b"-->\n"
        b'<!DOCTYPE ArrayOfWsInschrijving [<!ENTITY n "Janssens">]>\n'
        b"<ArrayOfWsInschrijving><wsInschrijving><p_persoon>1</p_persoon><Naam>&n;</Naam>"
        b"</wsInschrijving></ArrayOfWsInschrijving>"
    )
    with pytest.raises(SourceError, match="DOCTYPE"):
        parse_answer([body[i : i + 100] for i in range(0, len(body), 100)], op, "test")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}", "1234"),
        ("{% set x, y = 1, 2 %}{{ x + y }}", "3"),
        ('{{ {"a": 1}.a }}{{ dict(b=2).b }}', "12"),
        ('{{ "%s-%05d" % ("a", 7) }}', "a-00007"),
        ('{{ "{}.{:>3}".format("a", "b") }}', "a.  b"),
        ('{{ "-".join(range(3) | map("string")) }}', "0-1-2"),
        ("{% for r in rows if r.x %}{{ loop.index }}/{{ loop.length }} {% endfor %}", "1/2 2/2"),
        ("{{ ('ab' * 3) | center(10) }}|{{ 'x' | indent(2, true) }}", "ababab  |  x"),
        ("{{ [1, 2] + [3] }} {{ 2 ** 10 }} {{ 'a b c'.split() | length }}", "[1, 2, 3] 1024 3"),
        ("{% set s %}{% for i in range(3) %}{{ i }}{% endfor %}{% endset %}{{ s ~ '!' }}", "012!"),
        ("{{ ('x' * 65536) | length }}", "65536"),
    ],
)
def test_ordinary_templates_work_as_in_jinja(template, expected):
    from provisioner.mapping.spec import Template
    from provisioner.mapping.templates import Compiled, Row

    compiled = Compiled(Template(template, Path("m.yaml"), 1, "t"), expression=False, datasets={})
    rows = [Row({"x": "1"}), Row({}), Row({"x": "2"})]
    assert compiled.render({"rows": rows}, "1") == expected


def test_the_memory_limit_of_these_tests_is_real(tmp_path):
    """The child that runs the bombs cannot take 2 GB, and reports its own peak."""
    script = tmp_path / "provisioner" / "__main__.py"
    script.parent.mkdir()
    script.write_text("block = bytearray(1024**3 // 2)\nblock = bytearray(2 * 1024**3)\n")
    result = run_limited([], tmp_path, {"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0 and "MemoryError" in result.stderr
    assert 500 < result.peak_rss_mb < 1536
