"""Value checks shared by configuration sections. They raise ValueError; the loader adds the file,
the line and the key to the message."""

from __future__ import annotations

import ssl
from pathlib import Path


def positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def not_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def existing_file(path: Path) -> Path:
    """A file that is there and can be read: caught when the configuration is read, not as a
    traceback when the file is first opened."""
    if not path.is_file():
        raise ValueError(f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return path


def ca_bundle(path: Path) -> Path:
    """A file of CA certificates (PEM) that TLS can load."""
    existing_file(path)
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"{path} holds no CA certificate in PEM form ({exc})") from None
    return path
