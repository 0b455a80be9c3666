"""Project errors: invalid user input that the CLI reports as one line, exit 2."""

from __future__ import annotations


class FinRLLabError(Exception):
    """Invalid user input: a missing file, unknown ticker, bad dates or prices.

    The message names the offending value; ``hint`` says what to do next. The CLI
    prints ``error: <message>; <hint>`` and exits with status 2, no traceback.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class DataError(FinRLLabError):
    """Market data that cannot be used: missing, malformed or with bad prices."""


class PoolError(FinRLLabError):
    """A stock pool that is unknown, empty or names tickers the data lacks."""


class ConfigError(FinRLLabError):
    """A configuration entry or command-line option with an invalid value."""
