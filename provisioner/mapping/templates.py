"""Sandboxed Jinja: templates compiled once, rendered per person, every error pointing at its line.

Templates see each data set of a person as a *row*: ``{{ Lln.Voornaam }}``. A field without a value
is ``None`` and renders as nothing. A misspelt field is caught before any rendering, by comparing
the fields a template reads with the fields the source has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from provisioner.mapping.filters import FILTERS
from provisioner.mapping.spec import Template
from provisioner.model import Provenance, Record


class Row:
    """One record as templates see it: ``row.Field`` or ``row["Field"]``; no value is None."""

    __slots__ = ("_record",)

    def __init__(self, record: Record | None) -> None:
        self._record = record or {}

    def __getattr__(self, name: str) -> Any:
        return self._record.get(name)

    def __getitem__(self, name: str) -> Any:
        return self._record.get(name)

    def __bool__(self) -> bool:
        return bool(self._record)

    def __repr__(self) -> str:
        return f"Row({self._record!r})"


def _finalize(value: Any) -> Any:
    return "" if value is None else value


ENVIRONMENT = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    finalize=_finalize,
    autoescape=False,
    keep_trailing_newline=False,
)
ENVIRONMENT.filters.update(FILTERS)


class TemplateError(Exception):
    """A template that does not compile or does not render; the message says where and why."""


@dataclass(frozen=True)
class FieldUse:
    dataset: str
    field: str | None
    """None when the template uses the data set as a whole (then all its fields are needed)."""


class Compiled:
    """A compiled template (``{{ … }}`` text) or expression (``where``, ``prefer``)."""

    def __init__(self, source: Template, *, expression: bool, datasets: Mapping[str, Any]) -> None:
        self.source = source
        self.expression = expression
        text = source.text
        try:
            tree = ENVIRONMENT.parse(f"{{{{ {text} }}}}" if expression else text)
            if expression:
                self._evaluate = ENVIRONMENT.compile_expression(text, undefined_to_none=False)
            else:
                self._template = ENVIRONMENT.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            line = source.line + (exc.lineno or 1) - 1
            raise TemplateError(
                f"{source.file}:{line}: {source.where}: {exc.message} in {text!r}"
            ) from None
        self.variables = frozenset(_undeclared(tree))
        self.uses = tuple(sorted(set(_field_uses(tree, datasets)), key=str))
        self.why = Provenance(
            template=source.where,
            location=source.location,
            text=text,
            fields=tuple(f"{u.dataset}.{u.field or '*'}" for u in self.uses),
        )

    def render(self, context: Mapping[str, Any], person: str) -> str:
        try:
            if self.expression:
                return self._evaluate(**context)  # type: ignore[no-any-return]
            return self._template.render(context).strip()
        except Exception as exc:  # any failure inside a template is the template's error
            raise TemplateError(
                f"{self.source.location}: {self.source.where}: {type(exc).__name__}: {exc} "
                f"(person {person})"
            ) from None


def _undeclared(tree: nodes.Template) -> set[str]:
    from jinja2 import meta

    return meta.find_undeclared_variables(tree)


_ATTRIBUTE_FILTERS = {"map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique"}


def _field_uses(tree: nodes.Node, datasets: Mapping[str, Any]) -> Iterator[FieldUse]:
    """Fields read as ``Dataset.field``, ``Dataset["field"]`` or ``Dataset | map(attribute=…)``;
    any other use of a data set name counts as using the whole data set."""
    claimed: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name in datasets:
            claimed.add(id(target))
            if isinstance(node, nodes.Getattr):
                yield FieldUse(target.name, node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                yield FieldUse(target.name, node.arg.value)
            else:
                yield FieldUse(target.name, None)
    for node in tree.find_all(nodes.Filter):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name in datasets):
            continue
        names = [
            kw.value.value
            for kw in node.kwargs
            if kw.key == "attribute" and isinstance(kw.value, nodes.Const)
        ]
        if node.name in _ATTRIBUTE_FILTERS and node.name != "map" and node.args:
            first = node.args[0]
            if isinstance(first, nodes.Const) and isinstance(first.value, str):
                names.append(first.value)
        if names:
            claimed.add(id(target))
            for name in names:
                yield FieldUse(target.name, str(name).split(".")[0])
    for node in tree.find_all(nodes.Name):
        if node.name in datasets and id(node) not in claimed:
            yield FieldUse(node.name, None)
