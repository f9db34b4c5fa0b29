"""Files written under a temporary name, then renamed: a reader never sees half a file."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_create",
    "atomic_output",
    "atomic_write_text",
    "errors_name_target",
    "flush_to_disk",
    "remove_stale_temporaries",
    "target_of_temporary",
    "temporary_path",
]

# A temporary file untouched this long, whose process is gone, was left by a killed writer.
_STALE_AFTER_S = 60.0

# A full disk or quota is reported by write() and close(), whose errors carry no file name.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


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


def target_of_temporary(name: str) -> str | None:
    """The file name a temporary file of :func:`temporary_path` stands for, or None.

    ``.model.keras.tmp-12`` and ``.model.tmp-12.keras`` (``keep_suffix``) both give
    ``model.keras``; a name of no temporary file gives None.
    """
    match = re.fullmatch(r"\.(.+?)\.tmp-\d+(\.[^.]+)?", name)
    return None if match is None else match.group(1) + (match.group(2) or "")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files a killed writer of ``path`` left beside it.

    A file counts as left behind when its process (the number in its name) no longer runs
    on this machine and it has not changed for a minute; a writer on another machine of
    a shared file system keeps its file fresh, so it is not touched.

    Returns:
        The files removed.
    """
    pattern = re.compile(
        rf"\.{re.escape(path.stem)}\.tmp-(\d+){re.escape(path.suffix)}|"
        rf"\.{re.escape(path.name)}\.tmp-(\d+)"
    )
    removed: list[Path] = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(f".{path.stem}")]
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        pid = int(match.group(1) or match.group(2))
        if pid == os.getpid() or _running(pid):
            continue
        with contextlib.suppress(OSError):
            if time.time() - candidate.stat().st_mtime > _STALE_AFTER_S:
                candidate.unlink()
                removed.append(candidate)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # Someone else's process, or not a process number: leave it.
    return True


@contextlib.contextmanager
def errors_name_target(tmp: Path, target: Path, *, unnamed_full: bool = False) -> Iterator[None]:
    """Re-raise an OSError about ``tmp`` as one about ``target``, the file the user named.

    Args:
        tmp: The temporary file being written.
        target: The file it becomes.
        unnamed_full: Also name ``target`` in a full-disk (or quota) error that names no
            file, as write() raises it: the block writes ``target`` only. Defaults to False.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        ours = exc.filename is not None and Path(exc.filename) == tmp
        full = unnamed_full and exc.filename is None and exc.errno in _FULL
        if not (ours or full):
            raise
        raise type(exc)(exc.errno, exc.strerror, str(target)) from exc


def flush_to_disk(path: Path) -> None:
    """Wait until the file's contents are on the disk, not only in the kernel's cache.

    Before a temporary file is renamed to its real name: otherwise a machine that goes
    down (a cluster node failing, a power cut) can leave the new name holding an empty
    or partial file, which a rename after a kill cannot.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, keep_suffix: bool = False, durable: bool = True
) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was. OS errors
    name ``path``, not the temporary file.

    Args:
        path: The file to write.
        keep_suffix: See :func:`temporary_path`. Defaults to False.
        durable: Wait for the contents to reach the disk before the rename (see
            :func:`flush_to_disk`). Defaults to True; False only for a file rewritten
            often whose loss to a machine failure costs nothing (a progress snapshot).
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = temporary_path(path, keep_suffix=keep_suffix)
    try:
        with errors_name_target(tmp, path, unnamed_full=True):
            yield tmp
            if durable:
                flush_to_disk(tmp)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> None:
    """Write ``text`` to ``path`` as UTF-8 through :func:`atomic_output`.

    Args:
        path: The file to write.
        text: Its whole contents.
        durable: See :func:`atomic_output`. Defaults to True.
    """
    with atomic_output(path, durable=durable) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_create(path: str | os.PathLike[str], text: str) -> bool:
    """Write ``text`` to ``path`` whole, unless ``path`` exists by then.

    Of processes creating one file at once, exactly one succeeds; :func:`atomic_output`
    lets the last one win, after each had checked that the file did not exist.

    Returns:
        True when this process created ``path``; False when it existed (another process
        created it first).
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        with errors_name_target(tmp, path, unnamed_full=True):
            tmp.write_text(text, encoding="utf-8")
            flush_to_disk(tmp)
            try:
                os.link(tmp, path)  # fails where path exists, unlike a rename
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                # A file system without hard links: the last writer wins, as a rename does.
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return True
