"""The exception hierarchy: one base class, a few specific subclasses.

Every error a user can cause by what they pass in (a file, a spec, a command-line
option) is an :class:`AppSleuthError`. The CLI prints its message as one paragraph on
stderr and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
import os
import warnings

__all__ = [
    "AppSleuthError",
    "AppSleuthWarning",
    "DataError",
    "SpecError",
    "warn",
]

# The package's own modules: their file names start with this folder.
_PACKAGE = os.path.dirname(__file__) + os.sep


class AppSleuthError(Exception):
    """Base class of every error caused by user input."""


class DataError(AppSleuthError):
    """A data file or table cannot be used: names the file, column or row at fault."""


class SpecError(AppSleuthError):
    """A specification (model, training, sweep, CLI option) has an invalid field."""


class AppSleuthWarning(UserWarning):
    """Something the user should know, that does not stop the work."""


def warn(message: str, category: type[Warning] = AppSleuthWarning) -> None:
    """Issue a warning attributed to the first caller outside appsleuth.

    Python then shows the user's own line (a notebook cell's, a script's) under the
    message, and shows it once per line of theirs.
    """
    # A fixed stacklevel named a line of appsleuth whenever the warning came a few calls
    # down (predict -> preprocessing): the notebook showed appsleuth's source instead.
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    level = 2  # warn's caller
    while (
        frame is not None
        and frame.f_back is not None
        and frame.f_code.co_filename.startswith(_PACKAGE)
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
