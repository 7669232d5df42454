"""Renderings for people: the terminal preview, the HTML report, validation and explain."""
