"""Reading given paths boundedly: regular files only, and small records of bounded size.

A path may name a device (``/dev/zero``, ``/dev/urandom``), a named pipe or a socket, or
be a link to one: read whole, the first never ends (memory runs out), and opening a pipe
waits for a writer. Such a path is refused before it is opened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from appsleuth.errors import AppSleuthError, DataError

__all__ = [
    "MAX_RECORD_BYTES",
    "UnreadableFileError",
    "not_regular",
    "read_record_table",
    "read_record_text",
    "refuse_nul",
]

# The specs, manifests and JSON records appsleuth keeps are kilobytes to a few megabytes
# (a manifest of 100,000 trials: ~50 MB): anything larger is not such a file.
MAX_RECORD_BYTES = 256 * 2**20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device (such as /dev/zero)"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


class UnreadableFileError(OSError):
    """A path that names no regular file, or a record far larger than such a file is.

    An ``OSError``, so that every reader's handling of unreadable files applies; its
    text is the reason alone (no errno), for messages of the form ``X cannot be read: ...``.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unreadable"


def refuse_nul(path: object, field: str, error: type[AppSleuthError] = DataError) -> None:
    """Refuse a path that no file can have: one with a NUL character.

    The operating system's calls refuse it with a bare ``ValueError`` (embedded null
    byte), which some readers took for a damaged file and others let through as a
    traceback. Anything but a path is left to the caller's own checks.

    Args:
        path: The path given.
        field: The argument or field that gave it, for the message (``out``, ``data.path``).
        error: The error to raise. Defaults to :class:`~appsleuth.errors.DataError`.

    Raises:
        AppSleuthError: ``error``, naming ``field`` and the path, when it holds a NUL.
    """
    text = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if isinstance(text, str) and "\0" in text:
        raise error(
            f"{field} must be a path without a NUL character (\\x00), which no file name "
            f"can hold; received {field}={text!r}"
        )


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` names when it is no regular file (``a named pipe``), else None.

    Links are followed. A missing path is None: its readers say it does not exist.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def read_record_text(
    path: str | os.PathLike[str], *, limit: int = MAX_RECORD_BYTES, errors: str = "strict"
) -> str:
    """The UTF-8 text of a small file appsleuth keeps or is given (spec, manifest, JSON).

    Raises:
        FileNotFoundError: It does not exist.
        UnreadableFileError: It is no regular file, or holds more than ``limit`` bytes.
        OSError: It cannot be read.
        UnicodeDecodeError: It is not UTF-8 text (with ``errors="strict"``).
    """
    path = Path(path)
    kind = not_regular(path)
    if kind is not None:
        raise UnreadableFileError(f"it is {kind}, not a regular file")
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFileError(
            f"it holds more than {limit // 2**20} MiB, far more than such a file does"
        )
    return data.decode("utf-8", errors)


def read_record_table(path: str | os.PathLike[str], *, limit: int = MAX_RECORD_BYTES) -> Any:
    """A small CSV table appsleuth keeps (a run's ``model_history.csv``), as a data frame.

    Raises:
        FileNotFoundError: It does not exist.
        UnreadableFileError: It is no regular file, or holds more than ``limit`` bytes.
        OSError: It cannot be read.
        ValueError: It is not UTF-8 text, or not CSV (pandas' parser and empty-data errors).
    """
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(read_record_text(path, limit=limit)))
