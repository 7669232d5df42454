"""What a wheel would miss: a package directory without __init__.py (setuptools' find_packages
skips it), or data files the code reads but the package data does not list."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_has_an_init():
    for directory in (ROOT / "provisioner").rglob("*"):
        if directory.is_dir() and directory.name != "__pycache__" and any(directory.glob("*.py")):
            assert (directory / "__init__.py").exists(), directory


def test_the_schemas_are_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["provisioner"]
    assert "mapping/schema.json" in data and "schemas/*.json" in data
    assert (ROOT / "provisioner" / "mapping" / "schema.json").is_file()
    assert list((ROOT / "provisioner" / "schemas").glob("*.json"))
