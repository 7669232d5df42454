"""Renderings for people: terminal text now; JSON and HTML reports follow with the planner."""
