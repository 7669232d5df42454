"""Secrets come from the environment or a file, never from the configuration file itself."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner.log import register_secret


class Secret:
    """A secret value that never shows itself in a repr, a log line or an error message.

    A secret from the configuration is looked up when it is first used, not when the file is
    read: a command that never contacts the directory (validate, explain without a target) does
    not need its password. A reference that cannot be resolved then fails with the file, line
    and key it was written at."""

    __slots__ = ("_resolve", "_value", "origin")

    def __init__(
        self, value: str | None, origin: str, resolve: Callable[[], str] | None = None
    ) -> None:
        self._value = value
        self._resolve = resolve
        self.origin = origin
        if value is not None:
            register_secret(value)  # from now on, no log line can carry it

    def reveal(self) -> str:
        if self._value is None:
            assert self._resolve is not None
            self._value = self._resolve()
            register_secret(self._value)
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_PATH_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_variables(path: str, fail: Callable[[str], Exception]) -> str:
    """``${NAME}`` in a secret file's path, from the environment when the secret is used:
    systemd hands credentials (``LoadCredential=``) to a service in the folder named by
    ``$CREDENTIALS_DIRECTORY``, so ``file:${CREDENTIALS_DIRECTORY}/ad-password``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not os.environ.get(name):
            raise fail(
                f"environment variable {name} in the secret file's path is not set"
                + (
                    " (systemd sets it only for a service with LoadCredential=)"
                    if name == "CREDENTIALS_DIRECTORY"
                    else ""
                )
            )
        return os.environ[name]

    return _PATH_VARIABLE.sub(value, path)


def parse_secret(
    value: Any, base_dir: Path, fail: Callable[[str], Exception] = ValueError
) -> Secret:
    """``${ENV_VAR}`` or ``file:PATH`` (relative to the configuration file; ``${NAME}`` in PATH
    is taken from the environment), resolved when first used; *fail* makes the error of a
    reference that cannot be resolved then (it names where the reference was written). Anything
    else is refused now."""
    if not isinstance(value, str):
        raise ValueError("a secret must be ${ENV_VAR} or file:PATH")
    if match := _ENV_REF.match(value.strip()):
        name = match.group(1)

        def from_environment() -> str:
            if name not in os.environ:
                raise fail(f"environment variable {name} is not set")
            if not os.environ[name]:
                # Set but empty: a password line left blank in the service's environment file.
                # Sent as is, the directory would answer "invalid credentials", or worse, bind
                # anonymously; say what is wrong instead.
                raise fail(
                    f"${{{name}}} is empty: give the environment variable {name} its value "
                    "(check the service's environment file)"
                )
            return os.environ[name]

        return Secret(None, f"${{{name}}}", from_environment)
    if value.startswith("file:"):
        written = value[5:].strip()

        def from_file() -> str:
            path = (base_dir / _expand_variables(written, fail)).resolve()
            try:
                # Files usually end with a newline that is not part of the secret.
                secret = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise fail(f"cannot read secret file {path}: {exc.strerror}") from None
            if not secret:
                raise fail(f"secret file {path} is empty: write the secret into it")
            return secret

        shown = written if _PATH_VARIABLE.search(written) else str((base_dir / written).resolve())
        return Secret(None, f"file {shown}", from_file)
    raise ValueError(
        "a secret must be a reference, ${ENV_VAR} or file:PATH, never the secret itself"
    )
