"""A file of extra persons → a table of text values with the line each row starts on.

Only the form is judged here (encoding, delimiter, quoting, the shape of a row); what the values
mean (keys, schools) is judged by :mod:`.source`. A file that cannot be read as a whole (empty,
truncated, not UTF-8, without a header) raises :class:`BrokenFile`: the source makes that a block,
never "nobody in the file"."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import yaml

SAVE_AS_UTF8 = (
    "in Excel: Save as → 'CSV UTF-8 (door komma's gescheiden)'; a file saved as plain 'CSV' is in "
    "the Windows code page"
)


class BrokenFile(Exception):
    """The file as a whole cannot be trusted."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


@dataclass
class TableRow:
    line: int
    values: dict[str, str]
    problem: str = ""
    """What is wrong with the row's shape (too few or too many values); empty when nothing."""


@dataclass
class Table:
    columns: list[str]
    rows: list[TableRow] = field(default_factory=list)


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte order mark
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BrokenFile(f"is not UTF-8 text (line {line})", SAVE_AS_UTF8) from None


def detect_delimiter(header: str) -> str:
    """``;`` where Excel writes it (a Belgian or Dutch list separator), else ``,``."""
    return ";" if header.count(";") > header.count(",") else ","


def parse_csv(data: bytes) -> Table:
    text = decode(data)
    if not text.strip():
        raise BrokenFile("is empty")
    if "\x00" in text:
        raise BrokenFile("holds NUL characters: it is not a text file", SAVE_AS_UTF8)
    header_line = text.lstrip("\r\n").split("\n", 1)[0]
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=detect_delimiter(header_line), strict=True
    )
    table: Table | None = None
    line = 1
    try:
        for values in reader:
            start, line = line, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue  # a blank line, or one of only separators (Excel writes ;;; for them)
            if table is None:
                table = Table(_header(values, start))
                continue
            table.rows.append(_row(table.columns, values, start))
    except csv.Error as exc:
        if "end of data" in str(exc) or "EOF" in str(exc):
            raise BrokenFile(
                f"ends inside a quoted value that starts on line {line}: the file looks truncated"
            ) from None
        raise BrokenFile(f"cannot be read as CSV at line {reader.line_num} ({exc})") from None
    assert table is not None  # the text is not blank, so some row has a value
    last = table.rows[-1] if table.rows else None
    if last is not None and last.problem and not text.endswith(("\n", "\r")):
        raise BrokenFile(
            f"ends in the middle of the row on line {last.line}: the file looks truncated"
        )
    return table


def _header(values: list[str], line: int) -> list[str]:
    names = [v.strip() for v in values]
    while names and not names[-1]:
        names.pop()  # trailing separators
    for position, name in enumerate(names, start=1):
        if not name:
            raise BrokenFile(
                f"has a column without a name in its header (line {line}, column {position})"
            )
    seen: set[str] = set()
    for name in names:
        if name.casefold() in seen:
            raise BrokenFile(f"has the column {name!r} twice in its header (line {line})")
        seen.add(name.casefold())
    return names


def _row(columns: list[str], values: list[str], line: int) -> TableRow:
    extra = values[len(columns) :]
    values = values[: len(columns)]
    problem = ""
    if any(v.strip() for v in extra) or len(values) < len(columns):
        problem = (
            f"line {line} has {len(values) + len(extra)} values where the header has "
            f"{len(columns)} columns"
        )
    return TableRow(line, {c: v.strip() for c, v in zip(columns, values, strict=False)}, problem)


def parse_yaml(data: bytes) -> Table:
    """A YAML list of rows, each a mapping of column → value."""
    text = decode(data)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise BrokenFile(f"is not valid YAML{where} ({problem}): it may be truncated") from None
    if node is None:
        raise BrokenFile("is empty")
    if not isinstance(node, yaml.SequenceNode):
        raise BrokenFile(
            f"must be a list of rows (- p_persoon: ext1 …), line {node.start_mark.line + 1}"
        )
    columns: dict[str, None] = {}
    rows: list[TableRow] = []
    for item in node.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.MappingNode):
            rows.append(TableRow(line, {}, f"line {line} is not a row of column: value pairs"))
            continue
        values: dict[str, str] = {}
        problem = ""
        for key, value in item.value:
            if not isinstance(key, yaml.ScalarNode) or not isinstance(value, yaml.ScalarNode):
                problem = f"line {value.start_mark.line + 1}: a value must be a single value"
                continue
            name = str(key.value).strip()
            # The text as written (030569 stays 030569); ~ and null are no value.
            null = value.tag == "tag:yaml.org,2002:null"
            values[name] = "" if null else str(value.value).strip()
            columns.setdefault(name, None)
        rows.append(TableRow(line, values, problem))
    return Table(list(columns), rows)


def parse(data: bytes, suffix: str) -> Table:
    return parse_csv(data) if suffix.lower() == ".csv" else parse_yaml(data)
