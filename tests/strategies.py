"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st

XML_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(32) if chr(c) not in "\t\n\r"]
        + ["\ufffe", "\uffff"],
    )
)
"""Text XML 1.0 can carry: everything but most control characters and surrogates."""
