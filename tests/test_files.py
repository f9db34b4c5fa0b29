"""Bounded reading of given paths: regular files only, records of bounded size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appsleuth._files import UnreadableFileError, not_regular, read_record_text


def test_a_record_larger_than_its_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text('{"a": 1}')
    assert read_record_text(path, limit=8) == '{"a": 1}'
    with pytest.raises(UnreadableFileError, match=r"^it holds more than 0 MiB, far more than"):
        read_record_text(path, limit=7)


def test_what_a_path_names_when_it_is_no_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "file").write_text("x")
    assert not_regular(tmp_path / "pipe") == "a named pipe"
    assert not_regular(tmp_path / "zero") == "a character device (such as /dev/zero)"
    assert not_regular(tmp_path) == "a directory"
    assert not_regular(tmp_path / "file") is None
    assert not_regular(tmp_path / "absent") is None  # its reader says it does not exist
    with pytest.raises(UnreadableFileError, match=r"^it is a named pipe, not a regular file$"):
        read_record_text(tmp_path / "pipe")  # refused, not opened: that would wait
