"""The exception hierarchy: one base class, a few specific subclasses.

Every error a user can cause by what they pass in (a file, a spec, a command-line
option) is an :class:`AppSleuthError`. The CLI prints its message as one paragraph on
stderr and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "AppSleuthError",
    "AppSleuthWarning",
    "DataError",
    "SpecError",
]


class AppSleuthError(Exception):
    """Base class of every error caused by user input."""


class DataError(AppSleuthError):
    """A data file or table cannot be used: names the file, column or row at fault."""


class SpecError(AppSleuthError):
    """A specification (model, training, sweep, CLI option) has an invalid field."""


class AppSleuthWarning(UserWarning):
    """Something the user should know, that does not stop the work."""
