"""Files written under a temporary name, then renamed: a reader never sees half a file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output", "errors_name_target", "temporary_path"]


def temporary_path(path: Path, *, keep_suffix: bool = False) -> Path:
    """A hidden name beside ``path``, unique to this process.

    Args:
        path: The file to be written.
        keep_suffix: End the name in ``path``'s suffix (for writers that choose the format
            from it, like matplotlib). Defaults to False.
    """
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def errors_name_target(tmp: Path, target: Path) -> Iterator[None]:
    """Re-raise an OSError about ``tmp`` as one about ``target``, the file the user named."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or Path(exc.filename) != tmp or exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(target)) from exc


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was. OS errors
    name ``path``, not the temporary file.

    Args:
        path: The file to write.
        keep_suffix: See :func:`temporary_path`. Defaults to False.
    """
    path = Path(path)
    tmp = temporary_path(path, keep_suffix=keep_suffix)
    try:
        with errors_name_target(tmp, path):
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
