"""Sandboxed Jinja: templates compiled once, rendered per person, every error pointing at its line.

Templates see each data set of a person as a *row*: ``{{ Lln.Voornaam }}``. A field without a value
is ``None`` and renders as nothing. A misspelt field is caught before any rendering, by comparing
the fields a template reads with the fields the source has.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import inspect
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError

from provisioner.errors import ConfigError
from provisioner.mapping.filters import FILTERS
from provisioner.mapping.sandbox import (
    MAX_VALUE_CHARS,
    BoundedEnvironment,
    TemplateLimitError,
    end_budget,
    loops_run,
    new_budget,
)
from provisioner.mapping.spec import Template
from provisioner.model import Provenance, Record


class Row:
    """One record as templates see it: ``row.Field`` or ``row["Field"]``. A field without a value
    is empty text, whichever of Informat's three forms of "no value" it came in.

    ``missing`` names fields the source has but that were not fetched, because no template seemed
    to read them; reading one anyway is an error rather than a silent empty value.
    """

    __slots__ = ("_missing", "_record")

    def __init__(self, record: Record | None, missing: frozenset[str] = frozenset()) -> None:
        self._record = record or {}
        self._missing = missing

    def get(self, name: str) -> Any:
        value = self._record.get(name)
        if value is None:
            if name in self._missing:
                raise NotFetched(name)
            return ""
        return value

    __getattr__ = get
    __getitem__ = get

    def __bool__(self) -> bool:
        return bool(self._record)

    def __repr__(self) -> str:
        return f"Row({self._record!r})"


class NotFetched(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(
            f"field {field!r} was not fetched: write it as Dataset.{field} (or Dataset | "
            f"map(attribute={field!r})) so provisioner sees that the mappings use it"
        )


def _finalize(value: Any) -> Any:
    return "" if value is None else value


ENVIRONMENT = BoundedEnvironment(
    undefined=jinja2.StrictUndefined,
    finalize=_finalize,
    autoescape=False,
    keep_trailing_newline=False,
)
ENVIRONMENT.filters.update(FILTERS)
ENVIRONMENT.immutable_types |= {Row}


def _bounded_initials(value: object, separator: str = "") -> str:
    # One separator per name part: a long separator (built with * in the sandbox) times many
    # parts is checked before it is made.
    text = "" if value is None else str(value)
    parts = text.count(" ") + text.count("-") + 1
    if parts * (len(str(separator)) + 1) > MAX_VALUE_CHARS:
        raise TemplateLimitError(
            f"a template makes a value longer than {MAX_VALUE_CHARS // 1024} KiB (initials with "
            f"a separator of {len(str(separator)):,} characters)"
        )
    return FILTERS["initials"](value, separator)


ENVIRONMENT.filters["initials"] = _bounded_initials


class TemplateError(Exception):
    """A template that does not compile or does not render; the message says where and why.

    Failing for one person's values, it holds that person (see the mapping engine)."""


class TemplateMistake(TemplateError):
    """A rendering that fails because of the template itself, whoever's values it gets (an unsafe
    access the sandbox refuses, a field the source did not fetch): an error of the mappings, not
    a reason to hold one person."""


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
        if expression and ("{{" in text or "{%" in text):
            raise TemplateError(_braces_in_expression(source))
        try:
            tree = ENVIRONMENT.parse(f"{{{{ {text} }}}}" if expression else text)
            _check_filters(tree, source)
            if expression:
                self._evaluate = ENVIRONMENT.compile_expression(text, undefined_to_none=False)
            else:
                self._template = ENVIRONMENT.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            line = source.line + (exc.lineno or 1) - 1
            raise TemplateError(
                f"{source.file}:{line}: {source.where}: {exc.message} in {text!r}"
            ) from None
        except TemplateLimitError as exc:  # a constant part too large, found while compiling
            raise TemplateError(f"{source.location}: {source.where}: {exc}") from None
        self.variables = frozenset(_undeclared(tree))
        self.vars_used = frozenset(
            node.attr
            for node in tree.find_all(nodes.Getattr)
            if isinstance(node.node, nodes.Name) and node.node.name == "vars"
        )
        self._fast = _fast_path(tree, expression)
        self.inserts_name = _inserts_name(tree)
        """True when the template puts ``name`` into its text once, as it is, and reads it
        nowhere else: the text around it is then the same whatever the name."""
        self.uses = tuple(sorted(set(_field_uses(tree, datasets)), key=str))
        self.why = Provenance(
            template=source.where,
            location=source.location,
            text=text,
            fields=tuple(f"{u.dataset}.{u.field or '*'}" for u in self.uses),
        )

    def render(self, context: Mapping[str, Any], person: str) -> str:
        try:
            # The fast path inline: this runs a few dozen times per person.
            fast = self._fast
            if fast is not None:
                try:
                    value = fast(context)
                except _NotFast:
                    value = self._render(context, person)
            else:
                value = self._render(context, person)
        except TemplateLimitError as exc:
            # A template that tries this is a mistake in the mappings, not in one person's data:
            # the run stops here with one error instead of holding every person in turn.
            raise RenderLimitError(
                f"{self._location(exc)}: {self.source.where}: {exc} (person {person})"
            ) from None
        except RenderLimitError:
            raise  # the run's own totals: stops the run as it is
        except (SecurityError, NotFetched) as exc:
            raise TemplateMistake(
                f"{self.source.location}: {self.source.where}: {type(exc).__name__}: {exc} "
                f"(person {person})"
            ) from None
        except TypeError as exc:
            if (mistake := _argument_mistake(exc, self.source)) is not None:
                # Wrong arguments to a filter fail for everyone alike: one error of the mappings
                # (the engine counts the other persons), not a held person each.
                raise TemplateMistake(f"{mistake} (person {person})") from None
            raise TemplateError(
                f"{self.source.location}: {self.source.where}: {type(exc).__name__}: {exc} "
                f"(person {person})"
            ) from None
        except Exception as exc:  # any failure inside a template is the template's error
            raise TemplateError(
                f"{self.source.location}: {self.source.where}: {type(exc).__name__}: {exc} "
                f"(person {person})"
            ) from None
        if type(value) is str:
            if len(value) > MAX_VALUE_CHARS:
                raise TemplateError(
                    f"{self.source.location}: {self.source.where}: a template makes a value "
                    f"longer than {MAX_VALUE_CHARS // 1024} KiB ({len(value):,} characters) "
                    f"(person {person})"
                )
            total = _RUN_TOTAL.get()  # the run's count, inline: this runs once per value
            if total is not None:
                total.chars += len(value)
                if total.chars > MAX_RUN_CHARS:
                    raise _run_too_large(self.source, person)
        return value  # type: ignore[no-any-return]

    def _render(self, context: Mapping[str, Any], person: str) -> Any:
        """Through the sandboxed Jinja."""
        token = new_budget()
        try:
            if self.expression:
                value = self._evaluate(**context)
            else:
                value = self._template.render(context).strip()
        finally:
            iterations = loops_run()
            end_budget(token)
        _charge_run_loops(iterations, self.source, person)
        return value

    def _location(self, exc: BaseException) -> str:
        """The mapping file and line of the template line that failed (Jinja puts template
        lines into the traceback of a rendering)."""
        line = None
        trace = exc.__traceback__
        while trace is not None:
            if trace.tb_frame.f_code.co_filename == "<template>":
                line = trace.tb_lineno
            trace = trace.tb_next
        if line is None or self.expression:
            return self.source.location
        shown_file = self.source.location.rsplit(":", 1)[0]
        return f"{shown_file}:{self.source.line + line - 1}"


# -- mistakes found before anything is rendered --------------------------------------------------

COMMON_JINJA_FILTERS = (
    "capitalize",
    "default",
    "first",
    "int",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "replace",
    "reverse",
    "select",
    "selectattr",
    "sort",
    "string",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
)
"""Jinja's filters most useful in a mapping, listed with this project's own when a filter name
is wrong (all of Jinja's work: https://jinja.palletsprojects.com/en/stable/templates/)."""


def _line_of(source: Template, node: nodes.Node) -> str:
    """``FILE:LINE`` of *node* in the mapping file (a template may span several lines)."""
    shown_file = source.location.rsplit(":", 1)[0]
    return f"{shown_file}:{source.line + max(node.lineno, 1) - 1}"


def _braces_in_expression(source: Template) -> str:
    field = source.where.rsplit(".", 1)[-1].split("[", 1)[0]
    bare = re.sub(r"\{\{\s*|\s*\}\}", "", source.text).strip()
    return (
        f"{source.location}: {source.where}: `{field}` is an expression: write {bare} without "
        "{{ }}"
    )


def _public_filters() -> list[str]:
    return sorted(name for name in ENVIRONMENT.filters if not name.startswith("_"))


def filter_signature(name: str) -> str:
    """How filter *name* is called, from its Python signature without the value it filters (and
    Jinja's context argument): ``username(max_length=None, fallback=None)``."""
    function = ENVIRONMENT.filters[name]
    signature = _parameters(function)
    return f"{name}{signature}" if signature is not None else name


def _parameters(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    skip = 2 if getattr(function, "jinja_pass_arg", None) is not None else 1
    parameters = [
        p.replace(annotation=inspect.Parameter.empty)
        for p in list(signature.parameters.values())[skip:]
    ]
    return signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)


def _filters_and_tests(node: nodes.Node) -> Iterator[nodes.Filter | nodes.Test]:
    """Filter and test uses in the order they are written: in ``x | a | b`` the tree holds ``b``
    above ``a``, and the first mistake to report is ``a``."""
    if isinstance(node, nodes.Filter | nodes.Test):
        if node.node is not None:
            yield from _filters_and_tests(node.node)
        yield node
        for child in node.iter_child_nodes(exclude=("node",)):
            yield from _filters_and_tests(child)
        return
    for child in node.iter_child_nodes():
        yield from _filters_and_tests(child)


def _check_filters(tree: nodes.Template, source: Template) -> None:
    """Unknown filters and tests, and filter calls whose written arguments do not fit the filter:
    found once, before any person is rendered."""
    for node in _filters_and_tests(tree):
        if isinstance(node, nodes.Test):
            if node.name not in ENVIRONMENT.tests:
                near = difflib.get_close_matches(node.name, ENVIRONMENT.tests, n=1)
                suggestion = f" — did you mean {near[0]!r}?" if near else ""
                raise TemplateError(
                    f"{_line_of(source, node)}: {source.where}: no test named {node.name!r} "
                    f"(after 'is'){suggestion} Tests: {', '.join(sorted(ENVIRONMENT.tests))}"
                )
            continue
        if node.name.startswith("_") or node.name not in ENVIRONMENT.filters:
            own = ", ".join(sorted(FILTERS))
            jinja = ", ".join(COMMON_JINJA_FILTERS)
            near = difflib.get_close_matches(node.name, _public_filters(), n=1)
            suggestion = f" — did you mean {near[0]!r}?" if near else ""
            raise TemplateError(
                f"{_line_of(source, node)}: {source.where}: no filter named {node.name!r}"
                f"{suggestion} Filters: {own} (this project's); {jinja} (Jinja's; all of "
                "Jinja's filters work)"
            )
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            continue  # *args or **kwargs: only known when rendering
        signature = _parameters(ENVIRONMENT.filters[node.name])
        if signature is None:
            continue
        try:
            signature.bind(*node.args, **{keyword.key: keyword.value for keyword in node.kwargs})
        except TypeError as exc:
            problem = str(exc)
            given = {keyword.key for keyword in node.kwargs} - set(signature.parameters)
            for keyword in sorted(given):
                near = difflib.get_close_matches(keyword, list(signature.parameters), n=1)
                if near:
                    problem += f" — did you mean {near[0]}=?"
            raise TemplateError(
                f"{_line_of(source, node)}: {source.where}: wrong argument for filter "
                f"{node.name!r}: {problem}; it is written value | {filter_signature(node.name)}"
            ) from None


# What Python says when a call's arguments do not fit the function; the function's name first.
_ARGUMENT_MISTAKE = re.compile(
    r"^(\w+)\(\) (?:got an unexpected keyword argument|takes|missing \d+ required|"
    r"got multiple values for argument)"
)


def _argument_mistake(exc: TypeError, source: Template) -> str | None:
    """The message for a filter called with arguments that do not fit it, noticed only when
    rendering (arguments given as ``*args``/``**kwargs``); None for any other TypeError."""
    match = _ARGUMENT_MISTAKE.match(str(exc))
    if match is None:
        return None
    names = [
        name
        for name, function in ENVIRONMENT.filters.items()
        if getattr(function, "__name__", None) == match.group(1) and not name.startswith("_")
    ]
    if not names:
        return None
    name = names[0]
    return (
        f"{source.location}: {source.where}: wrong argument for filter {name!r}: {exc}; it is "
        f"written value | {filter_signature(name)}"
    )


MAX_RUN_CHARS = 256 * 1024 * 1024
"""All values the templates of one run may make together (a school of 50,000 people with twenty
values each uses about 30 MB)."""


class RenderLimitError(ConfigError):
    """A template tried to make a value beyond the sandbox's limits, or the templates of one run
    made more than :data:`MAX_RUN_CHARS` or looped more than :data:`MAX_RUN_ITERATIONS`: the
    whole run stops with this one error."""


MAX_RUN_ITERATIONS = 50_000_000
"""Loop iterations of all templates of one run together (about six seconds of looping): one
template may loop a million times for a value, but not for every person of a large school."""


class RunTotal:
    """What the templates of one run rendered so far."""

    __slots__ = ("chars", "iterations")

    def __init__(self) -> None:
        self.chars = 0
        self.iterations = 0


_RUN_TOTAL: contextvars.ContextVar[RunTotal | None] = contextvars.ContextVar(
    "run_total", default=None
)


@contextlib.contextmanager
def counting_run(total: RunTotal | None = None) -> Iterator[RunTotal]:
    """Count what every template renders until the block ends (one run of the mapping engine),
    from *total* on when given (a run rendered in two parts)."""
    total = total or RunTotal()
    token = _RUN_TOTAL.set(total)
    try:
        yield total
    finally:
        _RUN_TOTAL.reset(token)


def _run_too_large(source: Template, person: str) -> RenderLimitError:
    """The error of a run whose values together passed :data:`MAX_RUN_CHARS` at *person*."""
    return RenderLimitError(
        f"{source.location}: {source.where}: the mapping templates made more than "
        f"{MAX_RUN_CHARS // (1024 * 1024)} MiB of values in this run (reached at person "
        f"{person}); check the templates for values that grow with the data"
    )


def _charge_run_loops(iterations: int, source: Template, person: str) -> None:
    total = _RUN_TOTAL.get()
    if total is None or not iterations:
        return
    total.iterations += iterations
    if total.iterations > MAX_RUN_ITERATIONS:
        raise RenderLimitError(
            f"{source.location}: {source.where}: the mapping templates ran their loops more than "
            f"{MAX_RUN_ITERATIONS:,} times in this run (reached at person {person}); check the "
            "templates for loops that do not need to run for every person"
        )


# -- the fast path -------------------------------------------------------------------------------
# Most mapping templates are plain field lookups, literal text, comparisons and our own filters.
# Rendering those through Jinja costs ~20 µs each (a new context per call); 50,000 people with a
# dozen templates each would take half a minute. Such templates are turned into small closures with
# exactly Jinja's semantics; anything else, or any value that is not a row at run time, goes
# through the sandboxed Jinja as before.


class _NotFast(Exception):
    """This value needs the real Jinja: render it there."""


_PURE_FILTERS: dict[str, Callable[..., Any]] = {
    # The environment's own functions (``initials`` bounded), exactly what Jinja would call.
    **{name: ENVIRONMENT.filters[name] for name in FILTERS},
    "lower": str.lower,
    "upper": str.upper,
    "trim": str.strip,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lteq": operator.le,
    "gt": operator.gt,
    "gteq": operator.ge,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}

Fast = Callable[[Mapping[str, Any]], Any]


def _fast_path(tree: nodes.Template, expression: bool) -> Fast | None:
    body = tree.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts = [_fast(node) for node in body[0].nodes]
    if any(part is None for part in parts):
        return None
    if expression:
        (only,) = parts
        return only
    functions: list[Fast] = parts  # type: ignore[assignment]
    if len(functions) == 1:
        (only_part,) = functions
        return lambda context: _text(only_part(context)).strip()
    # Literal text is text already: joined as it is, without a call per person.
    pieces: list[str | Fast] = [
        _text(node.data if isinstance(node, nodes.TemplateData) else node.value)
        if isinstance(node, nodes.TemplateData | nodes.Const)
        else function
        for node, function in zip(body[0].nodes, functions, strict=True)
    ]

    def render(context: Mapping[str, Any]) -> str:
        texts = []
        for piece in pieces:
            if type(piece) is str:
                texts.append(piece)
            else:
                value = piece(context)  # type: ignore[operator]
                texts.append(value if type(value) is str else _text(value))
        return "".join(texts).strip()

    return render


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    return "" if value is None else str(value)


def _fast(node: nodes.Node) -> Fast | None:
    if isinstance(node, nodes.TemplateData | nodes.Const):
        value = node.data if isinstance(node, nodes.TemplateData) else node.value
        return lambda _c: value
    if isinstance(node, nodes.Name):
        name = node.name
        return lambda c: c[name]
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            field = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            field = node.arg.value
        else:
            return None
        if field.startswith("_"):
            return None
        if isinstance(node.node, nodes.Name):  # Lln.Naam, the usual case: one call
            name = node.node.name

            def lookup_name(c: Mapping[str, Any]) -> Any:
                row = c[name]
                if type(row) is not Row:
                    raise _NotFast
                value = row._record.get(field)  # Row.get, inline
                return row.get(field) if value is None else value

            return lookup_name
        target = _fast(node.node)
        if target is None:
            return None

        def lookup(c: Mapping[str, Any]) -> Any:
            row = target(c)
            if type(row) is not Row:
                raise _NotFast
            return row.get(field)

        return lookup
    if isinstance(node, nodes.Concat):
        items = [_fast(n) for n in node.nodes]
        if any(i is None for i in items):
            return None
        return lambda c: "".join([str(i(c)) for i in items])  # type: ignore[misc]
    if isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPARE:
        left, right = _fast(node.expr), _fast(node.ops[0].expr)
        compare = _COMPARE[node.ops[0].op]
        if left is None or right is None:
            return None
        return lambda c: compare(left(c), right(c))
    if isinstance(node, nodes.And | nodes.Or):
        left, right = _fast(node.left), _fast(node.right)
        if left is None or right is None:
            return None
        if isinstance(node, nodes.And):
            return lambda c: left(c) and right(c)
        return lambda c: left(c) or right(c)
    if isinstance(node, nodes.Not):
        inner = _fast(node.node)
        return None if inner is None else (lambda c: not inner(c))
    if isinstance(node, nodes.Filter) and node.name in _PURE_FILTERS and node.node is not None:
        if node.dyn_args or node.dyn_kwargs:
            return None
        function = _PURE_FILTERS[node.name]
        value = _fast(node.node)
        args = [_fast(a) for a in node.args]
        # Keywords too (``username(fallback='lln' ~ key)``): the default username template,
        # rendered once per person, went through Jinja's new context for them alone.
        kwargs = {kw.key: _fast(kw.value) for kw in node.kwargs}
        if value is None or any(a is None for a in (*args, *kwargs.values())):
            return None

        text_only = function in (str.lower, str.upper, str.strip)

        def call(c: Mapping[str, Any]) -> Any:
            subject = value(c)
            if text_only and not isinstance(subject, str):
                raise _NotFast
            if not args and not kwargs:
                return function(subject)
            return function(
                subject,
                *[a(c) for a in args],  # type: ignore[misc]
                **{key: a(c) for key, a in kwargs.items()},  # type: ignore[misc]
            )

        return call
    return None


def _inserts_name(tree: nodes.Template) -> bool:
    body = tree.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return False
    inserted = [n for n in body[0].nodes if isinstance(n, nodes.Name) and n.name == "name"]
    read = [n for n in tree.find_all(nodes.Name) if n.name == "name"]
    return len(inserted) == 1 and len(read) == 1


def _undeclared(tree: nodes.Template) -> set[str]:
    from jinja2 import meta

    return meta.find_undeclared_variables(tree)


# Filters that pass rows through (so a field read after them is a field of the data set), and
# filters whose first argument names a field.
_ROW_FILTERS = {
    "selectattr",
    "rejectattr",
    "sort",
    "unique",
    "first",
    "last",
    "reverse",
    "list",
    "select",
    "reject",
}
_FIRST_ARGUMENT_IS_FIELD = {"selectattr", "rejectattr", "groupby"}


def _rows_of(node: nodes.Node) -> nodes.Node:
    """The expression a chain of row-preserving filters starts from."""
    while isinstance(node, nodes.Filter) and node.name in _ROW_FILTERS and node.node is not None:
        node = node.node
    return node


def _field_uses(tree: nodes.Node, datasets: Mapping[str, Any]) -> Iterator[FieldUse]:
    """Fields read as ``Dataset.field``, ``Dataset["field"]``, ``(Dataset | first).field`` or
    through ``map``/``selectattr``/``sort``… with a field name. Any other use of a data set name
    counts as using the whole data set, so nothing it needs is left unfetched."""
    claimed: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        base = _rows_of(node.node)
        if not (isinstance(base, nodes.Name) and base.name in datasets):
            continue
        claimed.add(id(base))
        if isinstance(node, nodes.Getattr):
            yield FieldUse(base.name, node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield FieldUse(base.name, node.arg.value)
        else:
            yield FieldUse(base.name, None)
    for node in tree.find_all(nodes.Filter):
        if node.node is None:
            continue
        base = _rows_of(node.node)
        if not (isinstance(base, nodes.Name) and base.name in datasets):
            continue
        names = [
            kw.value.value
            for kw in node.kwargs
            if kw.key == "attribute" and isinstance(kw.value, nodes.Const)
        ]
        if node.name in _FIRST_ARGUMENT_IS_FIELD and node.args:
            first = node.args[0]
            if isinstance(first, nodes.Const) and isinstance(first.value, str):
                names.append(first.value)
        if names:
            claimed.add(id(base))
            for name in names:
                yield FieldUse(base.name, str(name).split(".")[0])
    for node in tree.find_all(nodes.Name):
        if node.name in datasets and id(node) not in claimed:
            yield FieldUse(node.name, None)
