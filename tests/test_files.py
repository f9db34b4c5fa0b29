"""Bounded reading of given paths: regular files only, records of bounded size."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
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


def _entry_points() -> dict[str, tuple[object, str]]:
    """Each API that takes a path, given one with a NUL, and the field its error names."""
    import appsleuth as aps
    from appsleuth import analysis, report
    from appsleuth.spec import load_run_spec

    bad = "a\0b"
    sweep = aps.load_sweep_spec(Path(__file__).parents[1] / "examples/sweeps/scan-layers.yaml")
    return {
        "load_sherlock": (lambda: aps.load_sherlock(bad), "path"),
        "DataSpec": (lambda: aps.DataSpec(path=bad), "data.path"),
        "load_run_spec": (lambda: load_run_spec(bad), "path"),
        "load_sweep_spec": (lambda: aps.load_sweep_spec(bad), "path"),
        "train out": (lambda: aps.train(aps.RunSpec(), out=bad), "out"),
        "load_run": (lambda: aps.load_run(bad), "run_dir"),
        "evaluate_run": (lambda: aps.evaluate_run(bad, pd.DataFrame()), "run_dir"),
        "predict": (lambda: aps.predict(bad, pd.DataFrame()), "run_dir"),
        "predict_file data": (lambda: aps.predict_file("runs", bad, "p.csv"), "data"),
        "predict_file out": (lambda: aps.predict_file("runs", "x.csv", bad), "out"),
        "prepare_sweep_dir": (lambda: aps.prepare_sweep_dir(sweep, bad), "out"),
        "run_local": (lambda: aps.run_local(bad), "sweep_dir"),
        "collect_results": (lambda: aps.collect_results(bad), "sweep_dir"),
        "load_results": (lambda: analysis.load_results(bad), "sweep_dir"),
        "write_report": (lambda: report.write_report(bad), "directory"),
        "write_table": (lambda: aps.write_table(pd.DataFrame(), bad), "path"),
    }


@pytest.mark.parametrize("entry", list(_entry_points()))
def test_a_path_with_a_nul_character_is_refused_naming_its_field(entry: str) -> None:
    # The OS layer's bare ValueError ("embedded null byte") was a traceback, or a
    # manifest called "damaged: not valid JSON".
    from appsleuth.errors import AppSleuthError

    call, field = _entry_points()[entry]
    with pytest.raises(AppSleuthError, match=rf"^{re.escape(field)} must be a path without a NUL"):
        call()
