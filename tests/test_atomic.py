"""Atomic output: the target appears whole or not at all, and errors name the target."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from appsleuth._atomic import atomic_create, atomic_output, temporary_path


def test_success_renames_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.json.tmp-")
        tmp.write_text("new")
        assert not target.exists()  # nothing visible before the rename
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")

    def write_half() -> None:
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer broke")

    with pytest.raises(RuntimeError, match="writer broke"):
        write_half()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_os_errors_name_the_target_not_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "out.csv"

    def write() -> None:
        with atomic_output(target) as tmp:
            tmp.write_text("x")

    with pytest.raises(FileNotFoundError) as caught:
        write()
    assert caught.value.filename == str(target)
    assert ".tmp-" not in str(caught.value)


def test_other_os_errors_pass_unchanged(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.txt"

    def write() -> None:
        with atomic_output(tmp_path / "out.txt"):
            other.with_name("nope").joinpath("x").read_text()

    with pytest.raises(FileNotFoundError) as caught:
        write()
    assert "nope" in caught.value.filename


def test_suffix_kept_for_format_sniffing_writers(tmp_path: Path) -> None:
    tmp = temporary_path(tmp_path / "plot.png", keep_suffix=True)
    assert tmp.suffix == ".png" and tmp.name.startswith(".plot.tmp-")


def _dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("keep_suffix", [False, True])
def test_temporaries_of_killed_writers_are_removed_on_the_next_write(
    tmp_path: Path, keep_suffix: bool
) -> None:
    target = tmp_path / "preds.csv"
    dead, also_dead, alive = _dead_pid(), _dead_pid(), os.getppid()

    def left_by(pid: int, *, age_s: float) -> Path:
        name = f".preds.tmp-{pid}.csv" if keep_suffix else f".preds.csv.tmp-{pid}"
        path = tmp_path / name
        path.write_text("half")
        os.utime(path, (path.stat().st_atime - age_s, path.stat().st_mtime - age_s))
        return path

    stale = left_by(dead, age_s=3600)
    fresh = left_by(also_dead, age_s=0)  # Perhaps another machine's writer, at work.
    running = left_by(alive, age_s=3600)
    other = tmp_path / ".predictions.csv.tmp-1"  # Another target's.
    other.write_text("x")
    with atomic_output(target, keep_suffix=keep_suffix) as tmp:
        tmp.write_text("whole")
    assert not stale.exists()
    assert fresh.exists() and running.exists() and other.exists()
    assert target.read_text() == "whole"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_error_that_names_no_file_names_the_target(tmp_path: Path, code: int) -> None:
    # write() and close() report a full disk without a file name.
    target = tmp_path / "out.json"
    with pytest.raises(OSError, match=r"out\.json") as caught, atomic_output(target):
        raise OSError(code, os.strerror(code))
    assert caught.value.errno == code and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_that_name_no_file_pass_unchanged(tmp_path: Path) -> None:
    with (
        pytest.raises(OSError, match=r"Invalid argument") as caught,
        atomic_output(tmp_path / "out.json"),
    ):
        raise OSError(errno.EINVAL, "Invalid argument")  # not about the file written
    assert caught.value.filename is None


def test_the_contents_reach_the_disk_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Renaming first, a machine going down could leave the real name holding an empty file.
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(f"fsync {Path(os.readlink(f'/proc/self/fd/{fd}')).name}")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(f"replace {Path(src).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_output(tmp_path / "out.csv", keep_suffix=True) as tmp:
        tmp.write_text("whole")
    assert events == [f"fsync {tmp.name}", f"replace {tmp.name}"]


def test_atomic_create_never_replaces_what_another_process_created(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    assert atomic_create(target, "first") is True
    assert atomic_create(target, "second") is False
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_atomic_create_without_hard_links_writes_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert atomic_create(tmp_path / "manifest.json", "whole") is True
    assert [p.read_text() for p in tmp_path.iterdir()] == ["whole"]
