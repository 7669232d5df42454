"""JSON Schema for mapping files, generated from the dataclasses of :mod:`provisioner.mapping.spec`.

Editors with a YAML language server read it (``# yaml-language-server: $schema=…`` at the top of a
mapping file) to complete keys, show each key's help and mark mistakes while typing. It is derived
from the same type hints the loader (:mod:`provisioner.yamlnodes`) reads, and accepts what that
loader accepts: a number where text is expected (``schools: [30569]``), and one value where a
list is expected (``members: pupils``). Descriptions are the docstrings written under each field.

The shipped ``schema.json`` is regenerated with ``python -m provisioner.mapping.schema``; a test
fails when it no longer matches the dataclasses.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from provisioner.mapping.spec import MappingFile, Template

SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA_ID = "urn:provisioner:mapping-file"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

_NAME = r"^[A-Za-z][A-Za-z0-9_-]*$"
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
PROPERTY_NAMES: dict[str, str] = {
    "MappingFile.accounts": _NAME,
    "MappingFile.groups": _NAME,
    "MappingFile.vars": _IDENTIFIER,
}
"""Name patterns for mapping keys (``Class.field``): account kinds and groups are named in
``members`` and ``owners.accounts``; a var is used as ``{{ vars.name }}``, so it must be a name
Jinja can read after a dot. The loader itself accepts any text here; this is editor guidance."""

_TEXT: dict[str, Any] = {"type": ["string", "integer"]}
"""The loader reads a YAML number or date as text (``30569``, ``2025-01-15``); not true/false."""

_SPECIAL: dict[type, dict[str, Any]] = {
    Template: {
        "type": ["string", "number"],
        "description": (
            "A Jinja template: text with `{{ … }}` for values from the data, e.g. "
            "`{{ Lln.Voornaam }}`; plain text is a template too. `where` and `prefer` are "
            'Jinja expressions, written without `{{ }}`: `Lln.voorlopig == "0"`.'
        ),
    },
    Path: {"type": "string"},
}


def mapping_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one mapping file, with :class:`MappingFile` as root."""
    walker = _Walker()
    root = walker.object_schema(MappingFile)
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "provisioner mapping file",
        "description": (
            "Accounts (one entry per kind: pupils, staff, …) and groups built from Informat data "
            "with Jinja templates. All *.yaml files of the mappings directory are read together; "
            "a name defined twice is an error. See docs/mappings.md."
        ),
        **root,
        "$defs": dict(sorted(walker.defs.items())),
    }


def schema_text() -> str:
    """The schema as shipped: pretty JSON, sorted keys, a trailing newline."""
    return json.dumps(mapping_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class _Walker:
    """Type hints → schema. Nested dataclasses go to ``$defs``; the root is inlined."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def type_schema(self, typ: Any, where: str) -> dict[str, Any]:
        origin = typing.get_origin(typ)
        args = typing.get_args(typ)
        if origin in (typing.Union, types.UnionType):
            options: list[dict[str, Any]] = []
            for arg in (a for a in args if a is not type(None)):
                option = self.type_schema(arg, where)
                # list[str] | None: one anyOf of array, text and null rather than nested ones
                options.extend(option["anyOf"] if list(option) == ["anyOf"] else [option])
            if type(None) in args:
                options.append({"type": "null"})
            return options[0] if len(options) == 1 else {"anyOf": options}
        if typ in _SPECIAL:
            return self.special(typ)
        if dataclasses.is_dataclass(typ) and isinstance(typ, type):
            return self.ref(typ)
        if origin is list:
            (item_type,) = args
            item = self.type_schema(item_type, f"{where}[]")
            array = {"type": "array", "items": item}
            # Like the loader: one value where a list is expected is a list of that one value.
            return array if _is_structured(item_type) else {"anyOf": [array, item]}
        if origin is dict:
            key_type, value_type = args
            if key_type is not str:
                raise TypeError(f"{where}: mapping keys must be text, not {key_type!r}")
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self.type_schema(value_type, f"{where}.*"),
            }
            if where in PROPERTY_NAMES:
                schema["propertyNames"] = {"pattern": PROPERTY_NAMES[where]}
            return schema
        if origin is Literal:
            return {"enum": list(args)}
        if typ is str:
            return dict(_TEXT)
        if typ is bool:
            return {"type": "boolean"}
        if typ is int:
            return {"type": "integer"}
        if typ is float:
            return {"type": "number"}
        if typ is Any:
            return {}
        raise TypeError(f"{where}: no JSON Schema for {typ!r}")  # extend _SPECIAL

    def special(self, typ: type) -> dict[str, Any]:
        self.defs.setdefault(typ.__name__, dict(_SPECIAL[typ]))
        return {"$ref": f"#/$defs/{typ.__name__}"}

    def ref(self, cls: type) -> dict[str, Any]:
        if cls.__name__ not in self.defs:
            self.defs[cls.__name__] = {}  # reserved first: a class may refer to itself
            self.defs[cls.__name__] = self.object_schema(cls)
        return {"$ref": f"#/$defs/{cls.__name__}"}

    def object_schema(self, cls: type) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.metadata.get("internal"):
                continue
            schema = self.type_schema(hints[f.name], f"{cls.__name__}.{f.name}")
            if f.name in docs:
                schema = {**schema, "description": docs[f.name]}
            default = _default(f)
            if default is not dataclasses.MISSING:
                schema = {**schema, "default": default}
            elif f.default_factory is dataclasses.MISSING:
                required.append(f.name)
            properties[f.name] = schema
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        description = _class_doc(cls)
        if description:
            schema["description"] = description
        return schema


def _is_structured(typ: Any) -> bool:
    """Types the loader reads from a YAML mapping or list, never from a single value."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(a) for a in typing.get_args(typ) if a is not type(None))
    if typ in _SPECIAL:
        return False
    return origin in (list, dict) or dataclasses.is_dataclass(typ)


def _default(f: dataclasses.Field[Any]) -> Any:
    """The field's default when JSON can show it; MISSING when required or not showable."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    try:
        json.dumps(value)
    except TypeError:
        return dataclasses.MISSING
    return value


# -- docstrings ----------------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """The string literal written directly under each field of *cls*, read from its source."""
    tree = _module_tree(cls.__module__)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            docs: dict[str, str] = {}
            for statement, following in zip(node.body, node.body[1:], strict=False):
                if (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ):
                    docs[statement.target.id] = _clean(following.value.value)
            return docs
    return {}


_TREES: dict[str, ast.Module] = {}


def _module_tree(module: str) -> ast.Module:
    if module not in _TREES:
        _TREES[module] = ast.parse(inspect.getsource(sys.modules[module]))
    return _TREES[module]


def _class_doc(cls: type) -> str:
    """The class's own docstring (not one inherited from ``object`` or made by dataclass)."""
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature
        return ""
    return _clean(doc)


def _clean(doc: str) -> str:
    """reST → what an editor shows: one paragraph per blank line, ``code`` as `code`."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    text = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    return re.sub(r"``(.+?)``", r"`\1`", text)


def main() -> None:
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
