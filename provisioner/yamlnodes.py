"""YAML nodes → dataclasses: the generic builder behind every YAML file the provisioner reads.

The file is composed into YAML nodes (which know their line) and built into typed dataclasses (which
know their types): every unknown key, wrong type or bad value is reported as
``FILE:LINE: path.to.key: what is wrong``. Used by the configuration (:mod:`provisioner.config`) and
the mapping files (:mod:`provisioner.mapping.spec`); it knows neither, so reading a mapping does not
import every source's and target's settings.

A dataclass field can carry ``metadata={"check": fn}`` (a conversion that may raise
``ValueError``), ``metadata={"internal": True}`` (not read from the file) or
``metadata={"key": "from"}`` (its YAML key, when that is a Python keyword); a type with a
``from_yaml(value, path, line, where)`` class method builds itself from a scalar; one with
``from_yaml_node(builder, node, where)`` from its whole node (a section whose keys name registered
kinds, like ``source:``); one with ``unquoted(written, where)`` may give its own advice for an
unquoted ``{{ … }}`` (which YAML reads as a mapping).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from provisioner.errors import ConfigError
from provisioner.secret import Secret, parse_secret

T = TypeVar("T")


class Builder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base_dir = path.parent

    def error(self, node: yaml.Node, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{node.start_mark.line + 1}: {where}: {message}")

    def build(self, node: yaml.Node, typ: Any, where: str) -> Any:
        origin = typing.get_origin(typ)
        args = typing.get_args(typ)
        if origin in (typing.Union, types.UnionType):
            if _is_null(node):
                if type(None) in args:
                    return None
                raise self.error(node, where, "a value is required")
            (inner,) = [a for a in args if a is not type(None)]
            return self.build(node, inner, where)
        if hasattr(typ, "from_yaml_node"):  # a type that reads its node itself
            return typ.from_yaml_node(self, node, where)
        if dataclasses.is_dataclass(typ) and not hasattr(typ, "from_yaml"):
            return self.build_dataclass(node, typ, where)
        if origin is list:
            if not isinstance(node, yaml.SequenceNode):
                # A single value where a list is expected is what people write for one school.
                if isinstance(node, yaml.ScalarNode) and not _is_null(node):
                    return [self.build(node, args[0], f"{where}[0]")]
                raise self.error(node, where, "expected a list")
            return [self.build(n, args[0], f"{where}[{i}]") for i, n in enumerate(node.value)]
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                raise self.error(node, where, "expected a mapping")
            return {
                self.scalar(k, str, where): self.build(v, args[1], f"{where}.{k.value}")
                for k, v in node.value
            }
        return self.scalar(node, typ, where)

    def scalar(self, node: yaml.Node, typ: Any, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            written = _written(node)
            if written.startswith("{{"):
                # YAML reads an unquoted {{ … }} as a mapping in a mapping.
                advice = typ.unquoted(written, where) if hasattr(typ, "unquoted") else None
                key = where.rsplit(".", 1)[-1]
                example = _quoted(written) if key.endswith("]") else f"{key}: {_quoted(written)}"
                raise self.error(node, where, advice or f"quote the value: {example}")
            raise self.error(node, where, "expected a single value, not a list or mapping")
        value = yaml.SafeLoader(b"").construct_object(node)
        if typ is Any:
            return value
        if typing.get_origin(typ) is Literal:
            allowed = typing.get_args(typ)
            if value not in allowed:
                choices = ", ".join(map(str, allowed))
                raise self.error(node, where, f"{value!r} is not one of {choices}")
            return value
        if hasattr(typ, "from_yaml"):  # a type that wants to know where it was written
            # A block scalar (| or >) starts on the line after its indicator: count lines
            # inside it from there.
            line = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
            try:
                return typ.from_yaml(value, self.path, line, where)
            except ValueError as exc:
                raise self.error(node, where, str(exc)) from None
        if typ is Secret:
            try:
                return parse_secret(
                    value, self.base_dir, lambda problem: self.error(node, where, problem)
                )
            except ValueError as exc:
                raise self.error(node, where, str(exc)) from None
        if typ is Path:
            if not isinstance(value, str) or not value:
                raise self.error(node, where, "expected a path")
            return (self.base_dir / value).resolve()
        if typ is str:
            # YAML reads 30569 as a number and 2025-01-15 as a date; both are fine as text here.
            if isinstance(value, bool) or value is None or isinstance(value, float):
                raise self.error(node, where, f"expected text, got {node.value!r}")
            if isinstance(value, int | dt.date) and node.style is None:
                # What was written, not what YAML made of it: 030567 is octal 12663 to YAML 1.1.
                return str(node.value)
            return str(value)
        if typ is dt.date:
            # YAML reads 2027-03-31 as a date; a datetime or a number is not one.
            if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
                raise self.error(node, where, f"expected a date (2027-03-31), got {node.value!r}")
            return value
        if typ is bool:
            if not isinstance(value, bool):
                raise self.error(node, where, f"expected true or false, got {node.value!r}")
            return value
        if typ in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(node, where, f"expected a number, got {node.value!r}")
            if typ is int and not isinstance(value, int):
                raise self.error(node, where, f"expected a whole number, got {node.value!r}")
            return typ(value)
        raise TypeError(f"no YAML conversion for {typ!r}")  # a programming error, not user input

    def build_dataclass(self, node: yaml.Node, cls: Any, where: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where or "(top)", "expected a mapping")
        hints = typing.get_type_hints(cls)
        # By YAML key: a field's own name, or the key its metadata names (``from`` for ``from_``).
        fields = {
            f.metadata.get("key", f.name): f
            for f in dataclasses.fields(cls)
            if not f.metadata.get("internal")
        }
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{where}.{key}" if where else key
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise self.error(key_node, path, f"unknown key (known here: {known})")
            name = fields[key].name
            if name in values:
                raise self.error(key_node, path, "given twice")
            value = self.build(value_node, hints[name], path)
            check: Callable[[Any], Any] | None = fields[key].metadata.get("check")
            if check is not None and value is not None:
                try:
                    value = check(value)
                except ValueError as exc:
                    raise self.error(value_node, path, str(exc)) from None
            values[name] = value
        for key, f in fields.items():
            no_default = (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            if f.name not in values and no_default:
                raise self.error(node, f"{where}.{key}" if where else key, "is required")
        try:
            return cls(**values)
        except ValueError as exc:  # cross-field rules in __post_init__
            raise self.error(node, where or "(top)", str(exc)) from None


def existing(path: Path) -> Path:
    """A ``check`` for a path that must be there when the configuration is read (mappings, a
    snapshot): the error then names the file and line, and says how the path was read."""
    if not path.exists():
        raise ValueError(
            f"{path} does not exist (a relative path is read from the configuration file's folder)"
        )
    return path


def _written(node: yaml.Node) -> str:
    """The text *node* was written as in the file (empty when the parser kept no copy)."""
    start, end = node.start_mark, node.end_mark
    if start.buffer is None or end.buffer is None:
        return ""
    return str(start.buffer[start.pointer : end.pointer])


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def load_yaml(path: Path, cls: type[T], what: str) -> T:
    """Read *path* into the dataclass *cls*; every problem names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(path, text, exc)) from None
    if node is None:
        raise ConfigError(f"{path}: the {what} file is empty")
    return Builder(path).build_dataclass(node, cls, "")


# -- YAML syntax errors in plain words -------------------------------------------------------------
# PyYAML describes what its parser expected ("expected <block end>, but found '<block mapping
# start>'"); a coordinator needs to know what to change on which line. The parser's own words stay
# at the end, in parentheses.

_INDENTATION = (
    "this line is indented more (or less) than the lines around it: keys at the same level must "
    "start in the same column, and the keys inside one start further right than it"
)
_UNQUOTED_TEMPLATE = re.compile(r"^(\s*(?:-\s+)?)([^\s:#'\"][^:#]*?):\s+(\{\{.*?)\s*$")
_UNQUOTED_IN_LIST = re.compile(r"[\[,]\s*\{\{")


def _quoted(value: str) -> str:
    """*value* as a quoted YAML scalar, double quotes unless it holds some itself."""
    if '"' not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _unquoted_template(line: str) -> str | None:
    """The advice for a line with an unquoted ``{{ … }}`` value, if it has one."""
    if match := _UNQUOTED_TEMPLATE.match(line):
        key, value = match.group(2).strip(), match.group(3)
        return f"quote the value: {key}: {_quoted(value)}"
    if _UNQUOTED_IN_LIST.search(line):
        return 'quote every value with {{ }} in a list: [Leerlingen, "{{ Lln.Klascode }}"]'
    return None


def yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """``FILE:LINE: not valid YAML: what to do (the parser says: …)`` for a YAML syntax error."""
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = str(getattr(exc, "problem", None) or exc)
    context = getattr(exc, "context", None)
    original = f"{context}: {problem}" if context else problem
    mark = problem_mark or context_mark
    if mark is None:
        return f"{path}: not valid YAML ({original})"
    lines = text.splitlines()
    number = mark.line  # 0-based
    line = lines[number] if number < len(lines) else ""
    advice = None
    # An unquoted template is the most common mistake and is seen on the line that started it.
    for candidate in (number, context_mark.line if context_mark else number):
        if candidate < len(lines) and (advice := _unquoted_template(lines[candidate])):
            number = candidate
            break
    if advice is None:
        above = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        if "'\\t'" in problem or "\t" in problem:
            advice = "tabs are not allowed for indentation, use spaces"
        elif problem == "mapping values are not allowed here":
            if _indent(line) > _indent(above) and ":" in above and above.split(":", 1)[1].strip():
                advice = _INDENTATION  # the value above seems to run on into this line
            else:
                key, _colon, value = line.strip().partition(": ")
                example = f"{key}: {_quoted(value.strip())}" if value else 'a: "b: c"'
                advice = f"a value with ': ' in it must be quoted: {example}"
        elif "could not find expected ':'" in problem:
            if context_mark is not None:
                number = context_mark.line
            advice = (
                "this line has no ':' where a key and its value were expected: write key: value, "
                "or check the indentation of the line"
            )
        elif problem.startswith("found undefined alias"):
            advice = (
                "a value that starts with * must be quoted (YAML reads *name as a reference to an "
                "&name written earlier)"
            )
        elif "cannot start any token" in problem:
            character = problem.split("'")[1] if "'" in problem else "this character"
            advice = f"a value that starts with {character} must be quoted"
        elif context and context.startswith("while scanning a quoted scalar"):
            if context_mark is not None:
                number = context_mark.line
            advice = "this quote is never closed: end the value with the same quote it starts with"
        elif context and context.startswith("while parsing a flow"):
            if context_mark is not None:
                number = context_mark.line
            advice = (
                "a list [ … ] or mapping { … } on this line is not closed, or a value in it with "
                "': ' or '{{' must be quoted"
            )
        elif "expected <block end>" in problem and "'<scalar>'" in problem:
            advice = (
                "something follows a quoted value on this line: a quoted value ends with its "
                "quote (write '' for a ' inside single quotes)"
            )
        elif "expected <block end>" in problem or "expected <block mapping" in problem:
            advice = _INDENTATION
    if advice is None:
        return f"{path}:{number + 1}: not valid YAML ({original})"
    return f"{path}:{number + 1}: not valid YAML: {advice} (the parser says: {original})"
