"""Errors the CLI turns into one clear line and exit code 1, without a traceback."""

from __future__ import annotations


class ProvisionerError(Exception):
    """An error the user can act on; its message is the whole story."""

    def lines(self) -> list[str]:
        """The message as lines to print: one, unless the error lists several problems (a line
        break inside a value, e.g. a file name, is not one of these)."""
        return [str(self)]


class ConfigError(ProvisionerError):
    """The configuration file or a command-line value is wrong."""


class SourceError(ProvisionerError):
    """A source answered wrongly or not at all. Never read as "zero rows"."""


class AuthenticationError(SourceError):
    """The source rejected the credentials; retrying would not help."""


class TransientSourceError(SourceError):
    """A failure worth retrying: connection reset, 502/503/504, a timeout."""
