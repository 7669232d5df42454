"""Secrets come from the environment or a file, never from the configuration file itself."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from provisioner.log import register_secret


class Secret:
    """A secret value that never shows itself in a repr, a log line or an error message."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin
        register_secret(value)  # from now on, no log line can carry it

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def parse_secret(value: Any, base_dir: Path) -> Secret:
    """Resolve ``${ENV_VAR}`` or ``file:PATH`` (relative to the configuration file)."""
    if not isinstance(value, str):
        raise ValueError("a secret must be ${ENV_VAR} or file:PATH")
    if match := _ENV_REF.match(value.strip()):
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return Secret(os.environ[name], f"${{{name}}}")
    if value.startswith("file:"):
        path = (base_dir / value[5:].strip()).resolve()
        try:
            # Files usually end with a newline that is not part of the secret.
            return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"), f"file {path}")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    raise ValueError(
        "a secret must be a reference, ${ENV_VAR} or file:PATH, never the secret itself"
    )
