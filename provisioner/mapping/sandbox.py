"""A Jinja sandbox that cannot be made to exhaust memory or time.

Jinja's sandbox keeps templates away from Python internals but lets them build values of any size:
``'x' * 10**9``, ``'{0:>1000000000}'.format(1)``, ``'x' | center(10**9)``. A mapping file is
configuration an ICT coordinator edits, not code; a slip in it must end in a clear error about
that template, never in a machine out of memory during the night. So every operation that can make
a value much larger than its inputs is checked *before* it runs:

- ``*``, ``**``, ``+`` and ``%`` on text, bytes, lists and whole numbers (the sandbox's
  intercepted operators); ``str.format``/``format_map`` and ``%``-format widths and precisions,
  field by field and together;
- the filters and text methods that pad, repeat or join (``center``, ``indent``, ``wordwrap``,
  ``join``, ``replace``, ``batch``, ``slice``, ``sum``, ``tojson``, ``ljust``, ``zfill``,
  ``expandtabs``, ``translate``…), ``int.to_bytes``, and ``range``;
- every value written out, captured by ``{% set %}…{% endset %}``, joined with ``~``, written as a
  list, tuple or dict literal, or returned by a call;
- the number of loop iterations in one rendering.

What a whole run may make (all values, all loop iterations) is counted in ``templates.py``.

The limits are constants: a mapping value is a name, an address or a path, never near them.
"""

from __future__ import annotations

import contextvars
import re
import types
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from string import Formatter
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import (
    MAX_RANGE,
    ImmutableSandboxedEnvironment,
    SandboxedFormatter,
    is_internal_attribute,
)
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

MAX_VALUE_CHARS = 64 * 1024
"""The longest value one template may make (64 KiB of text, or a list that long when written)."""
MAX_RENDER_CHARS = 1024 * 1024
"""All text one rendering may produce, counting what ``{% set %}`` blocks capture."""
MAX_ITERATIONS = 1_000_000
"""Loop iterations in one rendering, all loops together."""
MAX_INT_BITS = 64 * 1024
"""The largest whole number a template may compute (about 19,700 digits)."""


class TemplateLimitError(Exception):
    """A template tried to make something larger than the limits allow."""


class _Budget:
    __slots__ = ("iterations", "produced")

    def __init__(self) -> None:
        self.iterations = 0
        self.produced = 0


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("render_budget")


def new_budget() -> contextvars.Token[_Budget]:
    """Start counting one rendering; give the token back to :func:`end_budget`."""
    return _BUDGET.set(_Budget())


def loops_run() -> int:
    """Loop iterations of the rendering being counted so far."""
    return _budget().iterations


def end_budget(token: contextvars.Token[_Budget]) -> None:
    _BUDGET.reset(token)


def _budget() -> _Budget:
    try:
        return _BUDGET.get()
    except LookupError:
        # Outside Compiled.render (constant folding while compiling, a one-off rendering): each
        # call is still checked on its own, nothing is added up.
        return _Budget()


def _too_long(what: str) -> TemplateLimitError:
    return TemplateLimitError(
        f"a template makes a value longer than {MAX_VALUE_CHARS // 1024} KiB ({what}); "
        "mapping values are names, addresses and paths: check the template"
    )


_CONTAINERS = (list, tuple, set, frozenset, dict, KeysView, ValuesView, ItemsView)


def rendered_size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters *value* takes when written out; counting stops just past
    *limit*, so a huge value costs no more to measure than a small one."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 1
    if isinstance(value, _CONTAINERS):
        total = 2
        items: Iterable[Any] = value.items() if isinstance(value, dict) else value
        for item in items:
            total += rendered_size(item, limit - total) + 2
            if total > limit:
                break
        return total
    return 16  # a number, a row, a date: short when written


def check_size(value: Any, what: str, limit: int = MAX_VALUE_CHARS) -> Any:
    if rendered_size(value, limit) > limit:
        raise _too_long(what)
    return value


def _check_int(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(
            f"a template computes a number too large to be useful ({what}); check the template"
        )


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_VALUE_CHARS:
        raise _too_long(f"{what} {width:,}")


# -- operators ---------------------------------------------------------------------------------

_SEQUENCE = (str, bytes, list, tuple)


def _multiply(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, _SEQUENCE) and isinstance(times, int):
            if times > 0 and rendered_size(seq) * times > MAX_VALUE_CHARS:
                raise _too_long(f"repeated {times:,} times")
            return seq * times
    if isinstance(left, int) and isinstance(right, int):
        _check_int(abs(left).bit_length() + abs(right).bit_length(), "a product")
    return left * right


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        _check_int(abs(left).bit_length() * right, f"{left} ** {right}")
    return left**right


def _add(left: Any, right: Any) -> Any:
    if (
        isinstance(left, _SEQUENCE)
        and isinstance(right, _SEQUENCE)
        and rendered_size(left) + rendered_size(right) > MAX_VALUE_CHARS
    ):
        raise _too_long("joined with +")
    return left + right


# %-formatting: flags, then a width and a precision, each digits or * (taken from the arguments).
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_percent_format(template: str) -> None:
    total = 0  # all fields together: '%60000d' * 1000 has no single wide field
    for match in _PERCENT_FIELD.finditer(template):
        for number in match.groups():
            if number == "*":
                raise TemplateLimitError(
                    "a template takes a %-format width from its arguments (%*); write the width "
                    "in the format itself"
                )
            if number is not None:
                total += int(number)
                _check_width(total, "%-format widths adding up to")


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        check_percent_format(left)
        args = right if isinstance(right, tuple) else (right,)
        if len(left) + sum(rendered_size(a) for a in args) > MAX_VALUE_CHARS:
            raise _too_long("a %-format")
    return left % right


# -- str.format ----------------------------------------------------------------------------------

_SPEC_NUMBER = re.compile(r"\d+")


class _BoundedFormatter(SandboxedFormatter):
    """``str.format`` whose padding widths and precisions stay within the value limit, field by
    field and all fields together (one formatter per call)."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.written = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _SPEC_NUMBER.findall(format_spec):
            _check_width(int(number), "a format width or precision of")
        check_size(value, "a formatted field")
        field = super().format_field(value, format_spec)
        self.written += len(field)
        if self.written > MAX_VALUE_CHARS:
            raise _too_long("str.format")
        return field


def _bounded_format(formatter: Formatter, text: str, is_map: bool) -> Callable[..., str]:
    def wrapper(*args: Any, **kwargs: Any) -> str:
        if is_map:
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            kwargs, args = args[0], ()
        return check_size(type(text)(formatter.vformat(text, args, kwargs)), "str.format")

    return wrapper


# -- text methods ----------------------------------------------------------------------------------


def _check_str_method(
    text: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Refuse, before it runs, a text (or bytes) method call whose result would be too long;
    gives back the arguments to call it with (an iterator given to join is read here once)."""
    text = text if isinstance(text, str) else text.decode("latin-1")  # same length, same counts
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _check_width(args[0], f"{name} to a width of")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int) and text.count("\t") * tabsize + len(text) > MAX_VALUE_CHARS:
            raise _too_long("tabs expanded")
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = text.count(old) if old else len(text) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        if len(text) + count * (len(new) - len(old)) > MAX_VALUE_CHARS:
            raise _too_long("replace")
    elif name == "join" and args:
        items = list(args[0])
        check_size(items, "join")
        if len(text) * len(items) > MAX_VALUE_CHARS:
            raise _too_long("join")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((rendered_size(v) for v in args[0].values()), default=0)
        if longest * len(text) > MAX_VALUE_CHARS:
            raise _too_long("translate")
    return args


# -- filters -----------------------------------------------------------------------------------


def bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Jinja's filters that pad, repeat or write out values, with their sizes checked first."""
    center, indent, batch, slice_ = (filters[n] for n in ("center", "indent", "batch", "slice"))
    join, replace, sum_, fmt = (filters[n] for n in ("join", "replace", "sum", "format"))
    tojson, pprint, string = (filters[n] for n in ("tojson", "pprint", "string"))
    wordwrap = filters["wordwrap"]

    def checked_center(value: Any, width: int = 80) -> str:
        _check_width(width, "center to a width of")
        return str(center(value, width))

    def checked_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> str:
        if isinstance(width, int):
            lines = str(value).count("\n") + 1
            _check_width(width * lines + len(str(value)), "indented to")
        elif len(str(width)) * (str(value).count("\n") + 1) > MAX_VALUE_CHARS:
            raise _too_long("indent")
        return str(indent(value, width, *args, **kwargs))

    def checked_wordwrap(
        environment: Any, s: str, width: int = 79, *args: Any, **kwargs: Any
    ) -> str:
        wrapstring = kwargs.get("wrapstring") or (args[1] if len(args) > 1 else None) or "\n"
        lines = len(str(s)) // max(int(width), 1) + 1
        if len(str(s)) + lines * len(str(wrapstring)) > MAX_VALUE_CHARS:
            raise _too_long("wordwrap")
        return str(wordwrap(environment, s, width, *args, **kwargs))

    def checked_batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
        _check_width(linecount, "batches of")
        return batch(value, linecount, fill_with)

    def checked_slice(value: Any, slices: int, fill_with: Any = None) -> Any:
        _check_width(slices, "slices:")
        return slice_(value, slices, fill_with)

    def checked_join(context: Any, value: Any, d: str = "", attribute: Any = None) -> str:
        items = list(value)
        if rendered_size(items) + len(str(d)) * len(items) > MAX_VALUE_CHARS:
            raise _too_long("join")
        return str(join(context, items, d, attribute))

    def checked_replace(context: Any, s: Any, old: str, new: str, count: Any = None) -> str:
        text = str(s)
        _check_str_method(text, "replace", (old, new, -1 if count is None else count), {})
        return str(replace(context, s, old, new, count))

    def checked_sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        items = list(iterable)
        if not isinstance(start, int | float):
            check_size([start, *items], "sum")
        return sum_(environment, items, attribute, start)

    def checked_format(value: str, *args: Any, **kwargs: Any) -> str:
        if args and kwargs:
            return str(fmt(value, *args, **kwargs))  # Jinja's own error
        return str(_modulo(str(value), kwargs or tuple(args)))

    def checked_tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
        _check_width(indent, "a JSON indent of")
        check_size(value, "tojson")
        return tojson(eval_ctx, value, indent)

    def checked_pprint(value: Any) -> str:
        check_size(value, "pprint")
        return str(pprint(value))

    def checked_string(value: Any) -> str:
        check_size(value, "string")
        return str(string(value))

    # Keep Jinja's calling conventions (context, eval_ctx, environment) on the replacements.
    checked_join.jinja_pass_arg = join.jinja_pass_arg  # type: ignore[attr-defined]
    checked_replace.jinja_pass_arg = replace.jinja_pass_arg  # type: ignore[attr-defined]
    checked_sum.jinja_pass_arg = sum_.jinja_pass_arg  # type: ignore[attr-defined]
    checked_tojson.jinja_pass_arg = tojson.jinja_pass_arg  # type: ignore[attr-defined]
    checked_wordwrap.jinja_pass_arg = wordwrap.jinja_pass_arg  # type: ignore[attr-defined]
    # Jinja's own signature for each replacement: what a wrong argument's message shows, and
    # what the mapping compiler checks written arguments against.
    for checked, original in (
        (checked_center, center),
        (checked_indent, indent),
        (checked_wordwrap, wordwrap),
        (checked_batch, batch),
        (checked_slice, slice_),
        (checked_join, join),
        (checked_replace, replace),
        (checked_sum, sum_),
        (checked_format, fmt),
        (checked_tojson, tojson),
        (checked_pprint, pprint),
        (checked_string, string),
    ):
        checked.__wrapped__ = original  # type: ignore[attr-defined]
    return {
        "center": checked_center,
        "wordwrap": checked_wordwrap,
        "indent": checked_indent,
        "batch": checked_batch,
        "slice": checked_slice,
        "join": checked_join,
        "replace": checked_replace,
        "sum": checked_sum,
        "format": checked_format,
        "tojson": checked_tojson,
        "pprint": checked_pprint,
        "string": checked_string,
        "_bounded_loop": _bounded_loop,
        "_bounded_output": _bounded_output,
        "_bounded_concat": _bounded_concat,
        "_bounded_literal": _bounded_literal,
    }


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimitError(
            f"a template asks for a range of {len(numbers):,} numbers, more than the "
            f"{MAX_RANGE:,} allowed; check the template"
        )
    return numbers


def _bounded_loop(iterable: Any) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.iterations += 1
        if budget.iterations > MAX_ITERATIONS:
            raise TemplateLimitError(
                f"a template runs its loops more than {MAX_ITERATIONS:,} times; check the template"
            )
        yield item


def _bounded_output(value: Any) -> Any:
    budget = _budget()
    budget.produced += len(value) if type(value) is str else rendered_size(value, MAX_RENDER_CHARS)
    if budget.produced > MAX_RENDER_CHARS:
        raise TemplateLimitError(
            f"a template writes more than {MAX_RENDER_CHARS // (1024 * 1024)} MiB of text for one "
            "value; check the template"
        )
    return check_size(value, "written out")


def _bounded_concat(value: Any) -> Any:
    return check_size(value, "joined with ~")


def _bounded_literal(value: Any) -> Any:
    return check_size(value, "a list or dictionary written in the template")


class _Bounds(NodeTransformer):
    """Routes loops, written values and ``~`` through the checks above (in compiled code only;
    the parsed tree the rest of the code inspects is left as written)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call_filter("_bounded_loop", node.iter)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_call_filter("_bounded_output", n) for n in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        # Each part before it is turned into text (a list of long values written out is huge),
        # and the joined result.
        self.generic_visit(node)
        node.nodes = [_call_filter("_bounded_concat", n) for n in node.nodes]
        return _call_filter("_bounded_concat", node)

    # Lists, tuples and dicts written in a template: nesting them ({% set b = [a, a, a] %} again
    # and again) would otherwise grow a value that is only huge once written out.
    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _call_filter("_bounded_literal", node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return _call_filter("_bounded_literal", node) if node.ctx == "load" else node

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _call_filter("_bounded_literal", node)


def _call_filter(name: str, node: nodes.Node) -> nodes.Filter:
    expression = node
    if isinstance(node, nodes.TemplateData):
        expression = nodes.Const(node.data, lineno=node.lineno)
    return nodes.Filter(expression, name, [], [], None, None, lineno=node.lineno)


_METHODS = (types.MethodType, types.BuiltinMethodType)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the size checks of this module."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    immutable_types: frozenset[type] = frozenset({str, int, float, bool, tuple, type(None)})
    """Types whose attributes cannot change them; a caller may add its own read-only types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(bounded_filters(self.filters))
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) writes n paragraphs
        self.globals["range"] = _bounded_range
        self.binop_table = {
            **self.binop_table,
            "*": _multiply,
            "**": _power,
            "+": _add,
            "%": _modulo,
        }

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        return super()._generate(_Bounds().visit(source), *args, **kwargs)  # type: ignore[arg-type]

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Called on every attribute a template reads: say "not a format method" quickly.
        if not isinstance(value, _METHODS) or value.__name__ not in ("format", "format_map"):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        if isinstance(owner, Markup):
            return super().wrap_str_format(value)  # autoescaping is off; kept for completeness
        return _bounded_format(_BoundedFormatter(self), owner, value.__name__ == "format_map")

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # Text and numbers cannot be modified: skip the sandbox's slower check for mutables.
        if type(obj) in self.immutable_types:
            return not (attr.startswith("_") or is_internal_attribute(obj, attr))
        return super().is_safe_attribute(obj, attr, value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes) and isinstance(__obj, types.BuiltinMethodType):
            args = _check_str_method(owner, __obj.__name__, args, kwargs)
        elif isinstance(owner, int) and getattr(__obj, "__name__", "") == "to_bytes" and args:
            _check_width(args[0], "to_bytes of")
        result = super().call(__context, __obj, *args, **kwargs)
        # dict.fromkeys(range(99999), long_text) is small in memory, huge when written out.
        if isinstance(result, _CONTAINERS):
            check_size(result, f"the result of {getattr(__obj, '__name__', 'a call')}")
        return result
