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


def test_the_distribution_has_a_name_of_its_own_and_the_command_stays_provisioner():
    """``provisioner`` on the package index is an unrelated 2016 package: installing it by that
    name would install something else. The import package and the command keep the name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "informat-provisioner"
    assert project["scripts"] == {"provisioner": "provisioner.cli:main"}
    assert {"ad", "entra"} <= project["optional-dependencies"].keys()
    readme = (ROOT / "README.md").read_text()
    assert "provisioner[" not in readme.replace("informat-provisioner[", "")
    assert "pipx install '.[ad]'" in readme and "pipx install '.[entra]'" in readme
