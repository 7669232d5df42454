"""The fast path of templates (plain lookups, text, comparisons, our filters turned into closures)
renders exactly what the sandboxed Jinja renders, for any values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.mapping.spec import Template
from provisioner.mapping.templates import Compiled, Row

DATASETS = {"Lln": None}

TEMPLATES = [
    "{{ Lln.Voornaam }}",
    "{{ Lln.Voornaam }} {{ Lln.Naam }}",
    "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(fallback='lln' ~ key) }}",
    "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(max_length=8, fallback=key) }}",
    "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(12) }}",
    "{{ Lln.Naam | initials(separator='.') }}",
    "{{ Lln.Naam | initials(Lln.Voornaam) }}",
    "{{ Lln.Naam | left(length=3) | upper }}",
    "{{ name }}@{{ vars.domain }}",
    "x-{{ key }}",
    # literal text and constants of other types between the parts, joined without a call
    "  {{ Lln.Voornaam }}{{ 7 }}{{ none }} {{ key }} ",
    "{{ Lln['Naam'] }}-{{ Lln.Gone }}",  # a field not fetched: an error on both paths
    "{{ vars.domain }}.{{ key.x }}",  # not a row: Jinja's answer
    "{{ 7 | upper }}{{ Lln.Naam | lower }}",
]
EXPRESSIONS = [
    'Lln.voorlopig == "0"',
    'Lln.voorlopig == "0" and Lln.Naam != ""',
    "not Lln.Naam or Lln.Naam >= key",
]

values = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", " ", "0", "Ä é-ö"]))


def compiled(text: str, expression: bool = False) -> Compiled:
    return Compiled(
        Template(text, Path("m.yaml"), 1, "test"), expression=expression, datasets=DATASETS
    )


def both(template: Compiled, context: dict[str, Any]) -> tuple[Any, Any]:
    """(fast path, Jinja) results, or the exception type each raised."""
    fast = template._fast
    assert fast is not None, f"{template.source.text!r} should take the fast path"
    results = []
    for path in (fast, None):
        template._fast = path
        try:
            results.append(template.render(context, "1"))
        except Exception as exc:
            results.append(type(exc))
    template._fast = fast
    return results[0], results[1]


COMPILED = [compiled(t) for t in TEMPLATES] + [compiled(e, expression=True) for e in EXPRESSIONS]


@settings(max_examples=200, deadline=None)
@given(
    voornaam=values,
    naam=values,
    voorlopig=values,
    key=st.text(min_size=1, max_size=6),
    name=st.text(max_size=10),
)
def test_fast_path_renders_what_jinja_renders(
    voornaam: str | None, naam: str | None, voorlopig: str | None, key: str, name: str
) -> None:
    context = {
        "Lln": Row(
            {"Voornaam": voornaam, "Naam": naam, "voorlopig": voorlopig}, frozenset({"Gone"})
        ),
        "key": key,
        "name": name,
        "vars": Row({"domain": "school.be"}),
    }
    for template in COMPILED:
        fast, jinja = both(template, context)
        assert fast == jinja, template.source.text


def test_keywords_and_bounded_filters_take_the_fast_path() -> None:
    """A filter with keywords (the default username template) is fast too, and calls the
    environment's bounded ``initials``: a separator too long for the parts is refused as in
    Jinja, not built."""
    username = compiled("{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(fallback='lln' ~ key) }}")
    assert username._fast is not None
    context = {"Lln": Row({"Voornaam": "王", "Naam": "伟"}), "key": "7"}
    assert username.render(context, "7") == "lln7"
    bounded = compiled("{{ Lln.Naam | initials(separator=Lln.Voornaam) }}")
    assert bounded._fast is not None
    huge = {"Lln": Row({"Naam": "a " * 40_000, "Voornaam": "x" * 5_000}), "key": "1"}
    fast, jinja = both(bounded, huge)
    assert fast == jinja
    assert isinstance(fast, type) and issubclass(fast, Exception)
