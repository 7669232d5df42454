"""Mapping engine: YAML mapping files → desired accounts, OUs and groups."""
