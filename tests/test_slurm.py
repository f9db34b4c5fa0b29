"""The SLURM executor: option validation, the job script and its quoting, the journal,
the state mapping, and real submissions to a running SLURM (integration)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from appsleuth.cli import cli, main
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError, SpecError
from appsleuth.run import run_status
from appsleuth.sweep import SweepSpec, prepare_sweep_dir, read_plan, trial_states
from appsleuth.sweep import slurm as slurm_module
from appsleuth.sweep.slurm import (
    COMMENT_PREFIX,
    JOURNAL,
    OTHER_TASKS,
    SCRIPT,
    SlurmOptions,
    _append_event,
    cancel_slurm,
    check_submission,
    classify_trials,
    compress_indices,
    parse_comments,
    parse_squeue,
    query_squeue,
    query_submissions,
    read_journal,
    recover_submissions,
    render_script,
    slurm_available,
    slurm_states,
    split_arrays,
    submit_slurm,
    wait_slurm,
)
from appsleuth.sweep.worker import TrialOutcome
from tests.conftest import require_component
from tests.test_analysis import write_fake_run

SMALL = {"rows": 2000, "synth_seed": 4}
BASE = {"model": {"hidden": [4]}, "train": {"epochs": 2, "batch_size": 64}}
# A path that breaks any unquoted shell use: blanks, both quotes, a command, a %.
NASTY = "we ird '\" $(touch pwned) 50%"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    # sbatch exports the environment, so the jobs inherit this cache too.
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _spec(name: str = "s", executor: dict | None = None, **search) -> SweepSpec:
    search = search or {"grid": {"learning_rate": [0.003, 0.004]}}
    return SweepSpec.from_dict(
        {
            "name": name,
            "data": SMALL,
            "base": BASE,
            **search,
            "executor": {"kind": "slurm", **(executor or {})},
        }
    )


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"time_min": "1h"}, r"time_min must be a positive integer; received time_min='1h'"),
        ({"time_min": 0}, r"time_min must be a positive integer; received time_min=0"),
        ({"time_min": True}, r"time_min must be a positive integer; received time_min=True"),
        ({"cpus_per_task": 0}, r"cpus_per_task must be a positive integer"),
        ({"array_parallelism": -1}, r"array_parallelism must be a positive integer"),
        ({"gpus": 1.5}, r"gpus must be a non-negative integer; received gpus=1.5"),
        ({"mem_gb": "4G"}, r"mem_gb must be a positive number; received mem_gb='4G'"),
        ({"partition": "gpu; rm -rf ~"}, r"partition must be letters, digits.*'gpu; rm -rf ~'"),
        ({"account": "a b"}, r"account must be letters"),
        ({"qos": "$(id)"}, r"qos must be letters"),
        ({"job_name": "x\ny"}, r"job_name must be letters"),
        # A regular expression's $ also matches before a final newline.
        ({"partition": "debug\n"}, r"partition must be letters.*'debug\\n'"),
        ({"job_name": "x\n"}, r"job_name must be letters"),
        ({"extra_sbatch": "#SBATCH --hold"}, r"extra_sbatch must be a list"),
        ({"extra_sbatch": ["--hold"]}, r"must start with '#SBATCH '.*'--hold'"),
        ({"extra_sbatch": ["#SBATCH --hold\necho hi"]}, r"hold no newline"),
        ({"preamble": ["module load x"]}, r"preamble must be text"),
        # Settings that sbatch would silently drop: sbatch reads #SBATCH lines only before
        # the first command, and its command line (--array, --output) overrides them.
        (
            {"preamble": "module load cuda\n  #SBATCH --gres=gpu:1"},
            r"preamble's line '#SBATCH --gres=gpu:1' would be ignored by sbatch.*extra_sbatch",
        ),
        (
            {"extra_sbatch": ["#SBATCH --output=/scratch/x.out"]},
            r"cannot set --output, which appsleuth sets itself.*slurm/logs",
        ),
        ({"extra_sbatch": ["#SBATCH -o x.out"]}, r"cannot set --output"),
        ({"extra_sbatch": ["#SBATCH -e x.err"]}, r"cannot set --error"),
        ({"extra_sbatch": ["#SBATCH --array=0-9"]}, r"cannot set --array.*array_parallelism"),
        ({"extra_sbatch": ["#SBATCH -a 0-9"]}, r"cannot set --array"),
        ({"extra_sbatch": ["#SBATCH --comment=mine"]}, r"cannot set --comment"),
        # sbatch reads a long option's unambiguous start as the option.
        ({"extra_sbatch": ["#SBATCH --outp=/scratch/x.out"]}, r"cannot set --output"),
        ({"extra_sbatch": ["#SBATCH --arr 0-9"]}, r"cannot set --array"),
        ({"extra_sbatch": ["#SBATCH --comm=mine"]}, r"cannot set --comment"),
        ({"partitoin": "debug"}, r"unknown slurm executor option\(s\) 'partitoin'; valid"),
    ],
)
def test_options_are_validated(options: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        SlurmOptions.from_options(options)


def test_options_defaults_and_cpus_from_threads() -> None:
    opts = SlurmOptions.from_options({"partition": "debug", "mem_gb": 1.5}, threads_per_trial=4)
    assert opts.cpus_per_task == 4 and opts.time_min == 60 and opts.partition == "debug"
    assert SlurmOptions.from_options({"cpus_per_task": 2}).cpus_per_task == 2
    assert SlurmOptions.from_options({"cpus_per_task": 4}, threads_per_trial=4).cpus_per_task == 4
    # The task runs with its cpus_per_task: a different threads_per_trial was ignored.
    with pytest.raises(
        SpecError,
        match=r"threads_per_trial and cpus_per_task disagree: .*received threads_per_trial=4 "
        r"\(executor.threads_per_trial or --threads-per-trial\) and cpus_per_task=2; ",
    ):
        SlurmOptions.from_options({"cpus_per_task": 2}, threads_per_trial=4)


def test_compress_and_parse_squeue() -> None:
    assert compress_indices([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert compress_indices([3]) == "3"
    text = "12_0|RUNNING\n12_[2-4%2]|PENDING\n13_1|CANCELLED\n14|CANCELLED\n\nnoise\n"
    assert parse_squeue(text) == {
        "12": {0: "RUNNING", 2: "PENDING", 3: "PENDING", 4: "PENDING"},
        "13": {1: "CANCELLED"},
        "14": {OTHER_TASKS: "CANCELLED"},
    }


# --- the script ---------------------------------------------------------------------------


def test_script_settings_preamble_and_no_values_in_shell_text(tmp_path: Path) -> None:
    spec = _spec(zip={"learning_rate": [0.003, 0.004], "class_weight": ["none", "balanced"]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    opts = SlurmOptions.from_options(
        {
            "partition": "debug",
            "account": "proj-1",
            "qos": "short",
            "time_min": 90,
            "mem_gb": 2,
            "gpus": 1,
            "array_parallelism": 3,
            "job_name": "scan",
            "extra_sbatch": ["#SBATCH --constraint=avx2"],
            "preamble": "module load python/3.11\nconda activate env",
        }
    )
    text = render_script(sweep_dir, 2, opts, python="/opt/py/bin/python")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in (
        "#SBATCH --job-name=scan",
        "#SBATCH --array=0-1%3",
        f"#SBATCH --output={sweep_dir}/slurm/logs/%A_%a.out",
        "#SBATCH --time=1:30:00",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=2048M",
        "#SBATCH --gpus=1",
        "#SBATCH --partition=debug",
        "#SBATCH --account=proj-1",
        "#SBATCH --qos=short",
        "#SBATCH --constraint=avx2",
        "module load python/3.11",
        "conda activate env",
    ):
        assert expected in lines
    assert lines[-1].startswith(
        f"exec /opt/py/bin/python -m appsleuth sweep worker {sweep_dir} "
        '--index "$SLURM_ARRAY_TASK_ID"'
    )
    # The hyperparameters live in the manifest only.
    assert "0.003" not in text and "balanced" not in text
    assert "#SBATCH --time=1-00:00:00" in render_script(
        sweep_dir, 2, SlurmOptions(time_min=24 * 60)
    )


def test_a_path_ending_in_a_newline_stays_off_the_sbatch_lines(tmp_path: Path) -> None:
    # On an #SBATCH line its newline would end the line: the rest would be a command, and
    # sbatch reads no #SBATCH line after one.
    text = render_script(tmp_path / "s\n", 2, SlurmOptions(time_min=5))
    assert "#SBATCH --output" not in text and "#SBATCH --time=0:05:00" in text


def test_a_sweep_directory_name_never_leaves_its_comment_line(tmp_path: Path) -> None:
    text = render_script(tmp_path / "s\ntouch pwned", 1, SlurmOptions())
    lines = text.splitlines()
    assert lines[1].endswith(" sweep s_touch_pwned: array task i runs trial i.")
    assert not any(line.startswith("touch pwned:") for line in lines)  # a command, else


def test_nasty_path_is_quoted_and_never_executed(tmp_path: Path) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path / NASTY)
    text = render_script(sweep_dir, 2, SlurmOptions(), python=str(tmp_path / "p y" / "python"))
    # #SBATCH lines cannot carry such a path: sbatch gets --output on its command line.
    assert "#SBATCH --output" not in text
    worker = text.splitlines()[-1]
    # Running the line through a real shell, with a stand-in python, shows each argument
    # arrives intact and nothing runs.
    fake = tmp_path / "p y" / "python"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", worker],
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "-m",
        "appsleuth",
        "sweep",
        "worker",
        str(sweep_dir),
        "--index",
        "1",
    ]
    assert not list(tmp_path.rglob("pwned"))


def test_retry_reaches_the_worker_as_an_argument_not_through_the_environment(
    tmp_path: Path,
) -> None:
    # --export=ALL,APPSLEUTH_RETRY_FAILED=1 overrode a cluster's or user's --export=NONE
    # and handed the login node's whole environment to retried trials.
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    opts = SlurmOptions(
        extra_sbatch=("#SBATCH --export=NONE",), preamble='echo "preamble args: $#"'
    )
    sub = submit_slurm(sweep_dir, opts, retry_failed=True, dry_run=True)
    assert not any(a.startswith("--export") for a in sub.command)
    assert sub.command[-2:] == (str(sub.script), "--retry-failed")
    # The whole script through bash, as sbatch runs it, with a stand-in python.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    script = tmp_path / "job.sbatch"
    script.write_text(render_script(sweep_dir, 2, opts, python=str(fake)))
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}

    def worker_args(*args: str) -> list[str]:
        done = subprocess.run(
            ["bash", str(script), *args], env=env, capture_output=True, text=True, check=True
        )
        assert done.stdout.splitlines()[0] == "preamble args: 0"  # not conda's to parse
        return done.stdout.splitlines()[-3:]

    assert worker_args("--retry-failed") == ["--index", "1", "--retry-failed"]
    assert worker_args() == [str(sweep_dir), "--index", "1"]
    # The offset of an array past MaxArraySize arrives the same way.
    assert worker_args("--index-offset", "1001") == ["1", "--index-offset", "1001"]


def _sweep_run_argv(tmp_path: Path, name: str) -> tuple[list[str], Path]:
    """``appsleuth sweep run`` of a small spec file named ``name``, and its sweep directory."""
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(name=name).to_dict()))
    out = tmp_path / "out"
    return ["sweep", "run", str(spec_file), "--out", str(out)], out / name


def test_dry_run_writes_and_prints_the_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, sweep_dir = _sweep_run_argv(tmp_path, "dry")
    argv = [*run, "--dry-run"]
    assert main([*argv, "--partition", "debug", "--array-parallelism", "2"]) == 0
    captured = capsys.readouterr()
    script = sweep_dir / "slurm" / "job.sbatch"
    assert captured.out == script.read_text()
    assert "#SBATCH --partition=debug" in captured.out and "--array=0-1%2" in captured.out
    assert "would submit 2 trial(s) (0-1) with: sbatch" in captured.err
    assert not (sweep_dir / JOURNAL).exists()  # nothing submitted
    for bad in ("1h", "\u00b2", "\u0663"):  # a superscript two and an Arabic-Indic three
        assert main([*argv, "--time-min", bad]) == 2
        err = capsys.readouterr().err
        assert f"time_min must be a positive integer; received time_min='{bad}'" in err
    assert main([*run, "--executor", "local", "--wait"]) == 2
    assert "--wait applies to the slurm executor only" in capsys.readouterr().err
    assert main([*run, "--executor", "local", "--wait", "--partition", "debug"]) == 2
    assert "--partition, --wait apply to the slurm executor only" in capsys.readouterr().err
    # Accepted and never used: --wait with --dry-run, --poll-seconds without --wait or on
    # the local executor.
    assert main([*argv, "--wait"]) == 2
    assert "--dry-run submits none: received both" in capsys.readouterr().err
    assert main([*argv, "--poll-seconds", "1"]) == 2
    assert "received --poll-seconds 1 without --wait" in capsys.readouterr().err
    assert main([*run, "--executor", "local", "--poll-seconds", "1"]) == 2
    assert "--poll-seconds applies to the slurm executor only" in capsys.readouterr().err
    for bad in ("nan", "inf"):  # FloatRange(min=0.1) lets both through
        assert main([*argv, "--wait", "--poll-seconds", bad]) == 2
        assert "expected a finite number of seconds" in capsys.readouterr().err


def test_a_resume_beside_a_running_array_says_the_throttle_is_per_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # README promised "at most 20 trials at once", but %20 limits one job array only.
    run, sweep_dir = _sweep_run_argv(tmp_path, "busy")
    assert main([*run, "--dry-run"]) == 0
    _append_event(sweep_dir, {"event": "submit", "job_id": "40", "indices": [0, 1]})
    monkeypatch.setattr(slurm_module, "query_squeue", lambda ids: {"40": {0: "RUNNING"}})
    monkeypatch.setattr(slurm_module, "_max_array_size", lambda: None)
    monkeypatch.setattr(
        slurm_module,
        "_run",
        lambda cmd, what, **kw: subprocess.CompletedProcess(cmd, 0, stdout="41\n", stderr=""),
    )
    capsys.readouterr()
    assert main([*run, "--array-parallelism", "3"]) == 0
    err = capsys.readouterr().err
    assert "job(s) 40 of this sweep still have trials queued or running" in err
    assert "array_parallelism=3 limits each job array on its own" in err
    assert main(run) == 0  # no throttle, no note
    assert "array_parallelism" not in capsys.readouterr().err


def test_the_collect_hint_quotes_the_sweep_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A path with blanks or quotes printed bare breaks the command when pasted.
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path / "it's here")
    _append_event(sweep_dir, {"event": "submit", "job_id": "50", "indices": [0, 1]})
    for st in trial_states(sweep_dir):
        write_fake_run(sweep_dir / st.name)
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    err = " ".join(capsys.readouterr().err.split())  # as one line, whatever the width
    quoted = shlex.quote(str(sweep_dir))
    assert f"'appsleuth sweep collect {quoted}' to bring it up to date" in err


def test_slurm_status_reads_the_plan_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import appsleuth.sweep.store as store
    from tests.test_analysis import fake_sweep

    # With the seeds table, status of a SLURM sweep read the plan (checking every trial's
    # spec: about a second per thousand trials) three times: for the states, the table
    # and the results-behind note.
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [16, 32]}, "repeats": 2}, lambda i, p: {}
    )
    _append_event(sweep_dir, {"event": "submit", "job_id": "70", "indices": [0, 1, 2, 3]})
    plans = []
    read_plan = store.read_plan
    monkeypatch.setattr(store, "read_plan", lambda d: plans.append(d) or read_plan(d))
    monkeypatch.setattr(slurm_module, "read_plan", lambda d: plans.append(d) or read_plan(d))
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    out, err = capsys.readouterr()
    assert "settings across seeds" in out and "4 complete" in out
    assert "results.csv does not include 4 complete trial(s) yet" in " ".join(err.split())
    assert len(plans) == 1


def test_an_unreadable_journal_is_named(tmp_path: Path) -> None:
    # The bounded reader's reason alone ("it is a named pipe, not a regular file; check
    # the paths and the free space ...") reached the user, naming no file.
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    journal = sweep_dir / JOURNAL
    journal.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(journal)
    with pytest.raises(
        DataError,
        match=rf"the sweep's SLURM journal {journal} cannot be read: it is a named pipe, not "
        r"a regular file",
    ):
        read_journal(sweep_dir)


def test_a_failed_trials_output_file_is_named_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    _append_event(sweep_dir, {"event": "submit", "job_id": "60", "indices": [0, 1]})
    trials = trial_states(sweep_dir)
    write_fake_run(sweep_dir / trials[1].name, status="failed", error="DataError: bad")
    monkeypatch.setattr(slurm_module, "query_squeue", lambda ids: {"60": {0: "TIMEOUT"}})
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    err = capsys.readouterr().err
    died, failed = (sweep_dir / "slurm" / "logs" / f"60_{i}.out" for i in (0, 1))
    assert err.count(str(died)) == 1  # the job's own error already says "read <log>"
    assert f"DataError: bad (SLURM output: {failed})" in err


def test_workers_with_the_slurm_executor_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --workers sizes the local executor's pool; a SLURM sweep would silently ignore it.
    run, sweep_dir = _sweep_run_argv(tmp_path, "w")
    assert main([*run, "--executor", "slurm", "--dry-run", "--workers", "4"]) == 2
    err = capsys.readouterr().err
    assert "--workers applies to the local executor only; received --workers 4" in err
    assert "--array-parallelism" in err
    assert not sweep_dir.exists()  # refused before anything is written


def test_the_specs_workers_with_the_slurm_executor_gets_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A spec written for a laptop (workers: 4) run on SLURM: said, not silently dropped.
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(name="w", executor={"workers": 4}).to_dict()))
    argv = ["sweep", "run", str(spec_file), "--out", str(tmp_path / "out"), "--dry-run"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "the spec's executor workers=4 applies to the local executor only" in err


def test_cancel_on_a_local_sweep_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    assert main(["sweep", "cancel", str(sweep_dir)]) == 2
    assert "has no SLURM submissions to cancel" in capsys.readouterr().err


# --- journal and states -------------------------------------------------------------------


def test_journal_tolerates_a_torn_line(tmp_path: Path) -> None:
    _append_event(tmp_path, {"event": "submit", "job_id": "7", "indices": [0, 1]})
    with open(tmp_path / JOURNAL, "a") as fh:
        fh.write('{"event": "cancel", "job_')  # a crash mid-write
    assert [e["job_id"] for e in read_journal(tmp_path)] == ["7"]
    _append_event(tmp_path, {"event": "cancel", "job_ids": ["7"]})
    events = read_journal(tmp_path)
    assert [e["event"] for e in events] == ["submit", "cancel"]
    assert read_journal(tmp_path / "nowhere") == []


def test_journal_skips_a_line_nested_past_pythons_limit(tmp_path: Path) -> None:
    _append_event(tmp_path, {"event": "submit", "job_id": "7", "indices": [0, 1]})
    with open(tmp_path / JOURNAL, "a") as fh:
        # Nested past Python's limit: json.loads raises RecursionError, no ValueError
        fh.write("[" * 100_000 + "]" * 100_000 + "\n")
    assert [e["job_id"] for e in read_journal(tmp_path)] == ["7"]


def test_state_mapping_from_runs_journal_and_squeue(tmp_path: Path) -> None:
    trials = [
        (0, "t0", {}, "complete", {"wall_time_s": 1.0}),
        (1, "t1", {}, "missing", None),
        (2, "t2", {}, "incomplete", None),
        (3, "t3", {}, "failed", {"error": "DataError: Tetris"}),
        (4, "t4", {}, "missing", None),
        (5, "t5", {}, "missing", None),
        (6, "t6", {}, "incomplete", None),
        (7, "t7", {}, "missing", None),
    ]
    events = [
        {"event": "submit", "job_id": "10", "indices": [0, 1, 2, 3, 4]},
        {"event": "submit", "job_id": "11", "indices": [5, 6]},
        {"event": "cancel", "job_ids": ["11"]},
    ]
    queue = parse_squeue("10_1|PENDING\n10_2|RUNNING\n10_3|FAILED\n10_4|TIMEOUT\n")
    states = classify_trials(tmp_path, trials, events, queue)
    assert [s.status for s in states] == [
        "complete",
        "pending",
        "running",
        "failed",
        "failed",
        "cancelled",
        "cancelled",
        "unsubmitted",
    ]
    assert states[1].job_id == "10_1" and states[0].job_id == "10_0"
    assert states[3].error == "DataError: Tetris" and states[3].ran
    assert states[3].log == tmp_path / "slurm" / "logs" / "10_3.out"
    assert "ended without a complete run directory (SLURM state TIMEOUT: " in states[4].error
    assert "raise --time-min before resuming" in states[4].error
    assert str(tmp_path / "slurm" / "logs" / "10_4.out") in states[4].error and not states[4].ran
    # A job squeue forgot, that the journal never cancelled, failed: read its log.
    gone = classify_trials(tmp_path, trials[1:2], events[:1], {})
    assert gone[0].status == "failed" and "10_1.out" in gone[0].error
    # Resubmitted after a cancel: the newer job counts.
    again = [*events, {"event": "submit", "job_id": "12", "indices": [5]}]
    assert classify_trials(tmp_path, trials[5:6], again, {"12": {5: "PENDING"}})[0].status == (
        "pending"
    )


def test_an_array_cancelled_while_queued_is_cancelled_not_failed(tmp_path: Path) -> None:
    # scancel -s KILL of a queued array (of one of its tasks, even) ends the whole array,
    # and squeue shows it without an index: 30|CANCELLED. It was read as no state at all,
    # so its trials showed as failed, pointing to output files that never existed.
    trials = [(i, f"t{i}", {}, "missing", None) for i in range(3)]
    events = [{"event": "submit", "job_id": "30", "indices": [0, 1, 2]}]
    queue = parse_squeue("30_2|COMPLETED\n30|CANCELLED\n")
    states = classify_trials(tmp_path, trials, events, queue)
    assert [s.status for s in states] == ["cancelled", "cancelled", "failed"]
    assert "(SLURM state COMPLETED)" in states[2].error  # a task listed on its own


def test_a_task_gone_from_the_queue_without_output_is_not_sent_to_a_missing_log(
    tmp_path: Path,
) -> None:
    # scancel 30_1 of a queued array removes that task from squeue at once; it never
    # started, so the output file the message pointed to never existed.
    trials = [(i, f"t{i}", {}, "missing", None) for i in range(2)]
    events = [{"event": "submit", "job_id": "30", "indices": [0, 1]}]
    ran = tmp_path / "slurm" / "logs" / "30_0.out"
    ran.parent.mkdir(parents=True)
    ran.write_text("module: command not found\n")
    states = classify_trials(tmp_path, trials, events, {})
    assert [s.status for s in states] == ["failed", "failed"]
    assert states[0].log == ran and f"read {ran}" in states[0].error
    assert states[1].log is None and states[1].job_id == "30_1"
    assert "left the queue without starting" in states[1].error


def test_a_task_squeue_forgot_is_placed_by_what_slurmstepd_wrote_in_its_output(
    tmp_path: Path,
) -> None:
    # squeue forgets an ended job after MinJobAge (minutes), and there may be no sacct: a
    # task cancelled on its own showed as failed, a timed-out one without the hint.
    logs = tmp_path / "slurm" / "logs"
    logs.mkdir(parents=True)
    stepd = "slurmstepd-vm: error: *** JOB 41 ON vm CANCELLED AT 2026-11-27T02:26:28"
    texts = {
        0: f"{stepd} ***\n\nappsleuth: interrupted\n",
        1: "epoch 1\n" * 3000 + f"{stepd} DUE TO TIME LIMIT ***\nappsleuth: interrupted\n",
        2: "slurmstepd: error: Detected 1 oom_kill event in StepId=42.batch. Some of the "
        "step tasks have been OOM Killed.\n",
        3: "RESOURCE_EXHAUSTED: Out of memory while trying to allocate\n",  # the trial's own
        4: f"{stepd} DUE TO JOB REQUEUE ***\n",
        5: f"{stepd} DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***\n",
    }
    for index, text in texts.items():
        (logs / f"40_{index}.out").write_text(text)
    trials = [(i, f"t{i}", {}, "incomplete", None) for i in texts]
    events = [{"event": "submit", "job_id": "40", "indices": list(texts)}]
    states = classify_trials(tmp_path, trials, events, {})
    assert [s.status for s in states] == ["cancelled", *["failed"] * 5]
    assert "(SLURM state TIMEOUT: it needs more than time_min minutes" in states[1].error
    assert "(SLURM state OUT_OF_MEMORY: it needs more than mem_gb" in states[2].error
    assert "(SLURM state NODE_FAIL); read " in states[5].error
    for st in states[3:5]:
        assert "ended without a complete run directory; read " in st.error


def test_tasks_of_an_array_with_an_offset_map_back_to_their_trials(tmp_path: Path) -> None:
    # Task i of an array with offset k runs trial k + i: squeue and the output file names
    # know the task, the journal the offset. Read as task = trial, trial 999 was "failed"
    # (no task 999 in squeue) and trial 1003 pointed to an output file of another trial.
    for job_id, offset, indices in (("70", 3, [3, 999, 1000]), ("71", 1001, [1001, 1003])):
        _append_event(
            tmp_path, {"event": "submit", "job_id": job_id, "indices": indices, "offset": offset}
        )
    _append_event(tmp_path, {"event": "submit", "job_id": "72", "indices": [5]})  # no offset
    logs = tmp_path / "slurm" / "logs"
    logs.mkdir(parents=True)
    stepd = "slurmstepd-vm: error: *** JOB 75 ON vm CANCELLED AT 2026-11-27T02:26:28 ***\n"
    (logs / "71_2.out").write_text(stepd)
    states = dict.fromkeys((3, 999, 1000, 1001, 1003, 5), "missing")
    states.update({3: "complete", 1003: "incomplete"})
    trials = [(i, f"t{i}", {}, state, None) for i, state in states.items()]
    queue = parse_squeue("70_[996-997]|RUNNING\n71_0|PENDING\n72_5|RUNNING\n")
    got = classify_trials(tmp_path, trials, read_journal(tmp_path), queue)
    assert [(s.index, s.status, s.job_id) for s in got] == [
        (3, "complete", "70_0"),
        (999, "running", "70_996"),
        (1000, "running", "70_997"),
        (1001, "pending", "71_0"),
        (1003, "cancelled", "71_2"),
        (5, "running", "72_5"),
    ]
    assert got[0].log == logs / "70_0.out" and got[4].log == logs / "71_2.out"


def test_resume_submits_only_what_is_not_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(grid={"learning_rate": [0.1, 0.2, 0.3, 0.4]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    _append_event(sweep_dir, {"event": "submit", "job_id": "20", "indices": [0, 1, 2, 3]})
    monkeypatch.setattr(
        "appsleuth.sweep.slurm.query_squeue",
        lambda ids: parse_squeue("20_0|RUNNING\n20_1|PENDING\n20_2|OUT_OF_MEMORY\n"),
    )
    states = slurm_states(sweep_dir)
    assert [s.status for s in states] == ["running", "pending", "failed", "failed"]
    assert "(SLURM state OUT_OF_MEMORY: it needs more than mem_gb; raise --mem-gb" in (
        states[2].error
    )
    sub = submit_slurm(sweep_dir, SlurmOptions(array_parallelism=2), dry_run=True)
    assert sub.job_id is None and sub.indices == (2, 3)
    assert sub.command[:3] == ("sbatch", "--parsable", "--array=2-3%2")
    assert sub.command[4].startswith(f"--comment={COMMENT_PREFIX}")


# --- a submission whose job id never reached the journal ---------------------------------


def test_parse_comments_keeps_only_appsleuth_tokens() -> None:
    text = f"41|{COMMENT_PREFIX}abc\n42|(null)\n43|someone else's\nnot-a-job|{COMMENT_PREFIX}x\n"
    assert parse_comments(text) == {"abc": "41"}


def test_recover_submissions_replaces_only_orphaned_intents() -> None:
    events = [
        {"event": "intent", "token": "a", "indices": [0, 1], "time": "t0"},
        {"event": "submit", "job_id": "5", "indices": [0, 1], "token": "a"},
        {"event": "intent", "token": "b", "indices": [2], "time": "t1"},  # crashed after sbatch
        {"event": "intent", "token": "c", "indices": [3], "time": "t2"},  # job already gone
    ]
    merged, recovered = recover_submissions(events, {"a": "5", "b": "6"})
    assert recovered == [
        {"event": "submit", "job_id": "6", "indices": [2], "token": "b", "recovered": True,
         "time": "t1"}
    ]  # fmt: skip
    assert [e["event"] for e in merged] == ["intent", "submit", "submit", "intent"]
    assert merged[2] is recovered[0]


def test_a_recovered_submission_keeps_its_arrays_offset() -> None:
    events = [{"event": "intent", "token": "a", "indices": [1001, 1002], "offset": 1001}]
    (recovered,) = recover_submissions(events, {"a": "8"})[1]
    assert recovered["offset"] == 1001 and recovered["indices"] == [1001, 1002]


def _orphaned_sweep(tmp_path: Path) -> Path:
    sweep_dir = prepare_sweep_dir(_spec(grid={"learning_rate": [0.1, 0.2, 0.3]}), tmp_path)
    _append_event(sweep_dir, {"event": "intent", "token": "tok", "indices": [0, 1], "time": "t"})
    return sweep_dir


def test_status_finds_the_job_of_an_unjournaled_submission(tmp_path: Path) -> None:
    sweep_dir = _orphaned_sweep(tmp_path)
    asked = []

    def find(tokens):
        asked.append(list(tokens))
        return {"tok": "77"}

    states = slurm_states(
        sweep_dir,
        find_submissions=find,
        squeue=lambda ids: parse_squeue("77_0|RUNNING\n77_1|PENDING\n") if ids == ["77"] else {},
    )
    assert asked == [["tok"]]
    assert [(s.status, s.job_id) for s in states] == [
        ("running", "77_0"),
        ("pending", "77_1"),
        ("unsubmitted", None),
    ]
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent"]  # status only reads
    # Not found (sbatch never took it, or the job is long gone): the trials are free.
    lost = slurm_states(sweep_dir, find_submissions=lambda tokens: {}, squeue=lambda ids: {})
    assert [s.status for s in lost] == ["unsubmitted"] * 3


def test_resume_records_the_found_job_and_does_not_submit_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = _orphaned_sweep(tmp_path)
    monkeypatch.setattr(slurm_module, "query_submissions", lambda tokens: {"tok": "77"})
    monkeypatch.setattr(slurm_module, "query_squeue", lambda ids: parse_squeue("77_0|PENDING\n"))
    submitted = []

    def fake_run(cmd, what):
        submitted.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="78\n", stderr="")

    monkeypatch.setattr(slurm_module, "_run", fake_run)
    sub = submit_slurm(sweep_dir, SlurmOptions())
    # Trial 0 is still queued in job 77; trial 1 ended there without a run directory.
    assert sub.indices == (1, 2) and sub.job_id == "78"
    assert submitted[0][2] == "--array=1-2"
    events = read_journal(sweep_dir)
    assert [e["event"] for e in events] == ["intent", "submit", "intent", "submit"]
    assert events[1]["job_id"] == "77" and events[1]["recovered"] is True
    assert events[3]["job_id"] == "78" and events[3]["token"] == events[2]["token"]
    assert f"--comment={COMMENT_PREFIX}{events[2]['token']}" in submitted[0]


def test_a_refused_submission_is_not_looked_for_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    monkeypatch.setattr(
        slurm_module,
        "_run",
        lambda cmd, what: subprocess.CompletedProcess(cmd, 1, stdout="", stderr="bad partition"),
    )
    with pytest.raises(AppSleuthError, match=r"sbatch refused the job \(exit 1\): bad partition"):
        submit_slurm(sweep_dir, SlurmOptions())
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent", "refused"]

    def never(tokens):
        raise AssertionError(f"looked for {tokens}")

    states = slurm_states(sweep_dir, find_submissions=never)
    assert [s.status for s in states] == ["unsubmitted", "unsubmitted"]


# --- squeue as SLURM 22.05 answers ------------------------------------------------------

# A stand-in for squeue that answers from a table of jobs as SLURM 22.05 does: a started
# array task has a job id of its own (%A) besides its array's (%F); --array expands a
# stepped pending range without its last task; a range text is cut at SLURM_BITSTR_LEN
# (64) characters without --array.
_FAKE_SQUEUE = """\
import json, os, sys
rows = json.load(open(os.environ["FAKE_SQUEUE_ROWS"]))
fmt = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--format="))
jobs = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--jobs=")), None)
limit = int(os.environ.get("SLURM_BITSTR_LEN", "64"))
for r in rows:
    if jobs is not None and r["F"] not in jobs:
        continue
    if "--array" in sys.argv and r["tasks"].startswith("["):
        tasks = [str(i) for i in r["expanded"]]
    else:
        tasks = [r["tasks"][:limit] if limit else r["tasks"]]
    for t in tasks:
        line = fmt.replace("%A", r["A"]).replace("%F", r["F"]).replace("%i", r["F"] + "_" + t)
        print(line.replace("%T", r["T"]).replace("%k", r["k"]))
"""


@pytest.fixture
def fake_squeue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    script = bin_dir / "squeue"
    script.write_text(f"#!{sys.executable}\n{_FAKE_SQUEUE}")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_BITSTR_LEN", raising=False)

    def set_rows(rows: list[dict]) -> None:
        (tmp_path / "rows.json").write_text(json.dumps(rows))
        monkeypatch.setenv("FAKE_SQUEUE_ROWS", str(tmp_path / "rows.json"))

    return set_rows


def test_a_found_job_is_recorded_under_its_array_id_not_a_tasks_own(
    tmp_path: Path, fake_squeue, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = _orphaned_sweep(tmp_path)
    comment = f"{COMMENT_PREFIX}tok"
    # Array 292: task 1 still pending (id 292), task 0 started as job 293.
    fake_squeue(
        [
            {"A": "292", "F": "292", "tasks": "1", "T": "PENDING", "k": comment},
            {"A": "293", "F": "292", "tasks": "0", "T": "RUNNING", "k": comment},
        ]
    )
    assert query_submissions(["tok"]) == {"tok": "292"}
    states = slurm_states(sweep_dir)
    assert [(s.status, s.job_id) for s in states] == [
        ("running", "292_0"),
        ("pending", "292_1"),
        ("unsubmitted", None),
    ]
    assert submit_slurm(sweep_dir, SlurmOptions(), dry_run=True).indices == (2,)
    cancelled = []

    def fake_run(cmd, what, **kwargs):
        if cmd[0] == "scancel":
            cancelled.append(cmd)
            return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")
        return real_run(cmd, what, **kwargs)

    real_run = slurm_module._run
    monkeypatch.setattr(slurm_module, "_run", fake_run)
    assert cancel_slurm(sweep_dir) == ["292"] and cancelled == [["scancel", "292"]]
    recovered = [e for e in read_journal(sweep_dir) if e.get("recovered")]
    assert [e["job_id"] for e in recovered] == ["292"]


def test_stepped_and_long_pending_ranges_count_every_task(fake_squeue) -> None:
    long_range = ",".join(str(i) for i in range(100, 160, 2))  # far over 64 characters
    fake_squeue(
        [
            {"A": "250", "F": "249", "tasks": "1", "T": "RUNNING", "k": ""},
            {
                "A": "249",
                "F": "249",
                "tasks": "[3-13:2%1]",
                "T": "PENDING",
                "k": "",
                "expanded": [3, 5, 7, 9, 11],  # 22.05's --array loses 13
            },
            {
                "A": "260",
                "F": "260",
                "tasks": f"[{long_range}]",
                "T": "PENDING",
                "k": "",
                "expanded": list(range(100, 160, 2)),
            },
        ]
    )
    queue = query_squeue(["249", "260"])
    assert queue["249"] == {1: "RUNNING", 3: "PENDING", 5: "PENDING", 7: "PENDING",
                            9: "PENDING", 11: "PENDING", 13: "PENDING"}  # fmt: skip
    assert sorted(queue["260"]) == list(range(100, 160, 2))


# --- concurrent submitters, a missing SLURM ----------------------------------------------


def test_two_concurrent_submitters_submit_each_trial_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    monkeypatch.setattr(slurm_module, "query_submissions", lambda tokens: {})
    monkeypatch.setattr(
        slurm_module, "query_squeue", lambda ids: {j: {0: "PENDING", 1: "PENDING"} for j in ids}
    )
    # Set once the second submitter waits for the lock, or (with no lock) calls sbatch.
    second_started = threading.Event()
    real_lock = getattr(slurm_module, "_submit_lock", None)

    @contextlib.contextmanager
    def lock(where):
        if threading.current_thread() is not threading.main_thread():
            second_started.set()
        with real_lock(where):
            yield

    monkeypatch.setattr(slurm_module, "_submit_lock", lock, raising=False)
    sbatch_calls: list[str] = []
    second: dict = {}

    def fake_run(cmd, what, **kwargs):
        sbatch_calls.append(threading.current_thread().name)
        if threading.current_thread() is threading.main_thread():
            # The first submitter is inside sbatch: the second one starts now.
            thread = threading.Thread(
                target=lambda: second.update(sub=submit_slurm(sweep_dir, SlurmOptions())),
                name="second",
            )
            second["thread"] = thread
            thread.start()
            assert second_started.wait(120)
            return subprocess.CompletedProcess(cmd, 0, stdout="500\n", stderr="")
        second_started.set()
        return subprocess.CompletedProcess(cmd, 0, stdout="501\n", stderr="")

    monkeypatch.setattr(slurm_module, "_run", fake_run)
    first = submit_slurm(sweep_dir, SlurmOptions())
    second["thread"].join()
    assert sbatch_calls == ["MainThread"]
    assert first.job_id == "500" and second["sub"].job_id is None
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent", "submit"]


def test_sbatch_missing_leaves_no_intent_to_look_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(AppSleuthError, match=r"sbatch is not on PATH: submitting a sweep needs"):
        submit_slurm(sweep_dir, SlurmOptions())
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent", "refused"]
    assert [s.status for s in slurm_states(sweep_dir)] == ["unsubmitted", "unsubmitted"]


def test_status_without_squeue_shows_the_run_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A sweep copied off the cluster, its journal holding a submission not yet resolved.
    sweep_dir = _orphaned_sweep(tmp_path)
    _append_event(sweep_dir, {"event": "submit", "job_id": "9", "indices": [2]})
    write_fake_run(sweep_dir / read_plan(sweep_dir)[0].name)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(AppSleuthError, match=r"squeue is not on PATH: looking for a submission"):
        slurm_states(sweep_dir)
    capsys.readouterr()
    # sweep cancel reads the queue first: it says what needs SLURM, nothing is cancelled.
    assert main(["sweep", "cancel", str(sweep_dir)]) == 2
    err = capsys.readouterr().err
    assert "squeue is not on PATH" in err and "needs SLURM" in err and "status" not in err
    warnings: list[str] = []
    states = slurm_states(sweep_dir, on_error=warnings.append)
    assert [s.status for s in states] == ["complete", "unknown", "unknown"]
    assert "squeue could not be asked: squeue is not on PATH" in (states[1].error or "")
    assert len(warnings) == 1 and "showing what the run directories record" in warnings[0]
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    out, err = capsys.readouterr()
    assert "1 complete, 2 unknown" in out
    assert "appsleuth: warning: squeue is not on PATH" in err
    assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["complete", "unknown", "unknown"]


# --- a damaged journal, paths, the array size limit, --wait ------------------------------


@pytest.mark.parametrize(
    ("line", "fault"),
    [
        ('{"event": "submit", "indices": [1]}', r"the submit event needs a job_id of digits; "
         r"received job_id=None"),
        ('{"event": "submit", "job_id": "5", "indices": ["x"]}', r"the submit event needs "
         r"indices, a list of trial numbers; received indices=\['x'\]"),
        ('{"event": "cancel", "job_ids": "7"}', r"the cancel event needs job_ids, a list of "
         r"job ids; received job_ids='7'"),
        ('{"event": "intent", "indices": [1]}', r"the intent event needs a token \(text\); "
         r"received token=None"),
        ('{"event": "submit", "job_id": "5", "indices": [1], "offset": -1}', r"the submit "
         r"event's offset must be a non-negative integer; received offset=-1"),
        ('{"event": "intent", "token": "t", "indices": [1], "offset": "1"}', r"the intent "
         r"event's offset must be a non-negative integer; received offset='1'"),
        ('{"event": "submit", "job_id": "5", "indices": [1, 4], "offset": 2}', r"the submit "
         r"event's indices must be at least its offset; received offset=2 and "
         r"indices=\[1, 4\]"),
    ],
)  # fmt: skip
def test_a_damaged_journal_event_is_skipped_with_a_warning(
    tmp_path: Path, line: str, fault: str
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    _append_event(sweep_dir, {"event": "submit", "job_id": "7", "indices": [0]})
    with open(sweep_dir / JOURNAL, "a") as fh:
        fh.write(line + "\n")
    message = (
        re.escape(f"{sweep_dir / JOURNAL} line 2 is damaged (")
        + fault
        + re.escape("); that event is skipped")
    )
    with pytest.warns(AppSleuthWarning, match=message):
        states = slurm_states(sweep_dir, squeue=lambda ids: {"7": {0: "RUNNING"}})
    assert [s.status for s in states] == ["running", "unsubmitted"]


def test_a_sweep_directory_with_a_backslash_is_refused_for_slurm(tmp_path: Path) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path / "back\\slash")
    message = re.escape(f"the sweep directory {sweep_dir} contains a backslash") + ".*--out"
    with pytest.raises(SpecError, match=message):
        submit_slurm(sweep_dir, SlurmOptions(), dry_run=True)
    assert not (sweep_dir / JOURNAL).exists()


def test_sweep_run_refuses_a_backslash_before_writing_the_sweep_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _ = _sweep_run_argv(tmp_path, "slash")
    out = tmp_path / "back\\slash"
    argv[argv.index("--out") + 1] = str(out)
    assert main([*argv, "--dry-run"]) == 2
    assert "contains a backslash, which SLURM cannot take" in capsys.readouterr().err
    assert not out.exists()  # no manifest or spec left behind to trip a later run


def test_a_keras_backend_the_tasks_would_refuse_is_refused_before_submitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as before Keras starts
    monkeypatch.setenv("KERAS_BACKEND", "jax; touch pwned")
    with pytest.raises(SpecError, match=r"KERAS_BACKEND must be 'jax' .*received KERAS_BACKEND="):
        submit_slurm(sweep_dir, SlurmOptions(), dry_run=True)
    assert not (sweep_dir / SCRIPT).exists() and not (sweep_dir / JOURNAL).exists()


def test_a_device_the_tasks_would_refuse_is_refused_before_submitting(tmp_path: Path) -> None:
    # check_submission said nothing of it (device "GPU" is neither "gpu" nor "cpu"), and
    # submit_slurm refused it only once the submit lock was taken and slurm/ written.
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    message = re.escape("device must be 'auto', 'cpu' or 'gpu'; received device='GPU'")
    with pytest.raises(SpecError, match=message):
        check_submission(tmp_path / "not-yet", SlurmOptions(), "GPU")
    with pytest.raises(SpecError, match=message):
        submit_slurm(sweep_dir, SlurmOptions(), device="GPU")
    assert not (sweep_dir / "slurm").exists()


def _fake_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **scripts: str) -> None:
    bin_dir = tmp_path / "fakecmds"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_split_arrays_keeps_every_array_index_below_max_array_size() -> None:
    todo = [3, *range(999, 1004), 2500]
    arrays = split_arrays(todo, 1001)
    assert arrays == [(3, (3, 999, 1000, 1001, 1002, 1003)), (2500, (2500,))]
    assert [compress_indices(i - k for i in trials) for k, trials in arrays] == [
        "0,996-1000",
        "0",
    ]
    # Below the limit, or with no limit known: one array, task i runs trial i, as before.
    assert split_arrays([4, 2, 1000], 1001) == [(0, (2, 4, 1000))]
    assert split_arrays(todo, None) == [(0, tuple(todo))]
    assert split_arrays([], 3) == []
    assert split_arrays([0, 1, 2, 3, 4], 3) == [(0, (0, 1, 2)), (3, (3, 4))]
    assert split_arrays([5, 7], 1) == [(5, (5,)), (7, (7,))]
    with pytest.raises(AppSleuthError, match=r"this cluster takes no job arrays \(MaxArraySize=0"):
        split_arrays([5], 0)


def _sbatch_answers(monkeypatch: pytest.MonkeyPatch, *answers: str | int) -> list[list[str]]:
    """sbatch that answers each call with the next job id (or, for an int, that exit code)."""
    calls: list[list[str]] = []

    def fake_run(cmd, what, **kwargs):
        calls.append(list(cmd))
        answer = answers[len(calls) - 1]
        if isinstance(answer, int):
            return subprocess.CompletedProcess(cmd, answer, stdout="", stderr="bad array")
        return subprocess.CompletedProcess(cmd, 0, stdout=f"{answer}\n", stderr="")

    monkeypatch.setattr(slurm_module, "_run", fake_run)
    monkeypatch.setattr(slurm_module, "query_submissions", lambda tokens: {})
    return calls


def test_a_sweep_past_max_array_size_is_submitted_as_arrays_with_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was refused ("split the search into sweeps of at most N trials").
    sweep_dir = prepare_sweep_dir(_spec(grid={"learning_rate": [0.1, 0.2, 0.3, 0.4]}), tmp_path)
    _fake_commands(
        tmp_path,
        monkeypatch,
        scontrol='printf "MaxJobCount             = 10000\\nMaxArraySize            = 3\\n"',
    )
    dry = submit_slurm(sweep_dir, SlurmOptions(array_parallelism=2), dry_run=True)
    assert dry.max_array_size == 3 and dry.indices == (0, 1, 2, 3)
    assert [(a.offset, a.indices, a.job_id) for a in dry.arrays] == [
        (0, (0, 1, 2), None),
        (3, (3,), None),
    ]
    first, second = (a.command for a in dry.arrays)
    assert first[2] == "--array=0-2%2" and first[-1] == str(dry.script)  # no offset: as before
    assert second[2] == "--array=0%2" and second[-3:] == (str(dry.script), "--index-offset", "3")
    assert read_journal(sweep_dir) == []
    # The script's own --array stays one sbatch takes (it said 0-3, refused by hand).
    assert "\n#SBATCH --array=0-2%2\n" in dry.script_text
    assert "# This plan's 4 trials pass the cluster's MaxArraySize (3)," in dry.script_text
    calls = _sbatch_answers(monkeypatch, "51", "52")
    sub = submit_slurm(sweep_dir, SlurmOptions(), retry_failed=True)
    assert sub.job_ids == ("51", "52") and sub.job_id == "51"
    assert calls[1][-3:] == ["--index-offset", "3", "--retry-failed"]
    events = read_journal(sweep_dir)
    assert [(e["event"], e.get("job_id"), e["offset"], e["indices"]) for e in events] == [
        ("intent", None, 0, [0, 1, 2]),
        ("submit", "51", 0, [0, 1, 2]),
        ("intent", None, 3, [3]),
        ("submit", "52", 3, [3]),
    ]
    # Each array has a token of its own, which finds it again after a crash.
    assert events[0]["token"] != events[2]["token"]
    assert f"--comment={COMMENT_PREFIX}{events[2]['token']}" in calls[1]
    queue = "51_0|RUNNING\n51_[1-2]|PENDING\n52_0|RUNNING\n"
    monkeypatch.setattr(slurm_module, "query_squeue", lambda ids: parse_squeue(queue))
    states = slurm_states(sweep_dir)
    assert [(s.status, s.job_id) for s in states] == [
        ("running", "51_0"),
        ("pending", "51_1"),
        ("pending", "51_2"),
        ("running", "52_0"),
    ]
    assert states[3].log == sweep_dir / "slurm" / "logs" / "52_0.out"
    calls.clear()
    monkeypatch.setattr(
        slurm_module,
        "_run",
        lambda cmd, what, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""),
    )
    assert cancel_slurm(sweep_dir) == ["51", "52"] and calls == [["scancel", "51", "52"]]


class _Killed(BaseException):
    """Stands for the process dying between sbatch and the journal write."""


@pytest.mark.parametrize("dies_at", ["intent", "submit"])
def test_a_crash_between_two_arrays_is_finished_by_the_same_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dies_at: str
) -> None:
    # Killed before the second array's intent (sbatch never ran for it), or after its
    # sbatch but before its job id was journaled: a rerun submits what is missing, once.
    sweep_dir = prepare_sweep_dir(_spec(grid={"learning_rate": [0.1, 0.2, 0.3]}), tmp_path)
    monkeypatch.setattr(slurm_module, "_max_array_size", lambda: 2)
    calls = _sbatch_answers(monkeypatch, "61", "62", "63")
    append = slurm_module._append_event
    seen: list[str] = []

    def dies_at_the_second_array(where, event):
        seen.append(event["event"])
        if seen.count(dies_at) == 2:
            raise _Killed
        append(where, event)

    monkeypatch.setattr(slurm_module, "_append_event", dies_at_the_second_array)
    with pytest.raises(_Killed):
        submit_slurm(sweep_dir, SlurmOptions())
    monkeypatch.setattr(slurm_module, "_append_event", append)
    orphan = [e["token"] for e in read_journal(sweep_dir) if e["event"] == "intent"][1:]
    second_sbatch = [c for c in calls if any(a.endswith(tuple(orphan)) for a in c)]
    # squeue knows the second array by its token only if sbatch ran for it.
    found = {orphan[0]: "62"} if second_sbatch else {}
    monkeypatch.setattr(slurm_module, "query_submissions", lambda tokens: found)
    monkeypatch.setattr(
        slurm_module, "query_squeue", lambda ids: {j: {0: "PENDING", 1: "PENDING"} for j in ids}
    )
    sub = submit_slurm(sweep_dir, SlurmOptions())
    submitted = [e for e in read_journal(sweep_dir) if e["event"] == "submit"]
    if dies_at == "intent":
        assert len(calls) == 2 and sub.job_ids == ("62",)
        assert calls[1][2] == "--array=0" and calls[1][-2:] == ["--index-offset", "2"]
    else:
        assert len(calls) == 2 and sub.job_ids == ()  # found again, not submitted twice
        assert submitted[1].get("recovered") is True
    assert [(e["job_id"], e["offset"], e["indices"]) for e in submitted] == [
        ("61", 0, [0, 1]),
        ("62", 2, [2]),
    ]
    assert [s.job_id for s in slurm_states(sweep_dir)] == ["61_0", "61_1", "62_0"]


def test_a_refused_second_array_says_the_first_stays_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(grid={"learning_rate": [0.1, 0.2, 0.3]}), tmp_path)
    monkeypatch.setattr(slurm_module, "_max_array_size", lambda: 2)
    calls = _sbatch_answers(monkeypatch, "81", 1, "82")
    with pytest.raises(
        AppSleuthError,
        match=r"sbatch refused the job \(exit 1\): bad array; the script is .*; job\(s\) 81 "
        r"\(trials 0-1\) of this submission were submitted and stay queued: run the same "
        r"command again to submit the remaining trials",
    ):
        submit_slurm(sweep_dir, SlurmOptions())
    assert [e["event"] for e in read_journal(sweep_dir)] == [
        "intent",
        "submit",
        "intent",
        "refused",
    ]
    monkeypatch.setattr(
        slurm_module, "query_squeue", lambda ids: {"81": {0: "PENDING", 1: "PENDING"}}
    )
    assert submit_slurm(sweep_dir, SlurmOptions()).job_ids == ("82",)
    assert calls[2][2] == "--array=0" and calls[2][-2:] == ["--index-offset", "2"]


def test_a_second_array_sbatch_that_times_out_says_the_first_stays_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a refusal said so: a timed-out sbatch left the user thinking nothing was queued.
    sweep_dir = prepare_sweep_dir(_spec(grid={"learning_rate": [0.1, 0.2, 0.3]}), tmp_path)
    monkeypatch.setattr(slurm_module, "_max_array_size", lambda: 2)
    calls = _sbatch_answers(monkeypatch, "91")

    def times_out_second(cmd, what, **kwargs):
        if calls:
            raise AppSleuthError(f"sbatch did not answer within 120 s ({what})")
        return answer_first(cmd, what, **kwargs)

    answer_first = slurm_module._run
    monkeypatch.setattr(slurm_module, "_run", times_out_second)
    with pytest.raises(
        AppSleuthError,
        match=r"did not answer within 120 s \(submitting a sweep\); job\(s\) 91 \(trials "
        r"0-1\) of this submission were submitted and stay queued",
    ):
        submit_slurm(sweep_dir, SlurmOptions())
    # sbatch may have taken it: its intent stays open for its token to find the job.
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent", "submit", "intent"]


def test_dry_run_shows_every_sbatch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run, sweep_dir = _sweep_run_argv(tmp_path, "split")
    monkeypatch.setattr(slurm_module, "_max_array_size", lambda: 1)
    assert main([*run, "--dry-run", "--array-parallelism", "4"]) == 0
    err = capsys.readouterr().err
    assert (
        "would submit 2 trial(s) as 2 job arrays (this cluster's job arrays take indices 0..0 "
        "only (MaxArraySize=1); task i of an array with offset k runs trial k + i) with:"
    ) in err
    commands = [line.split("   # ") for line in err.splitlines() if line.startswith("  sbatch ")]
    assert [trials for _, trials in commands] == ["trials 0", "trials 1"]
    assert [shlex.split(cmd)[2] for cmd, _ in commands] == ["--array=0%4", "--array=0%4"]
    assert shlex.split(commands[1][0])[-2:] == ["--index-offset", "1"]
    assert not (sweep_dir / JOURNAL).exists()
    calls = _sbatch_answers(monkeypatch, "91", "92")
    monkeypatch.setattr(slurm_module, "query_squeue", lambda ids: {})
    assert main([*run, "--array-parallelism", "4"]) == 0
    out, err = capsys.readouterr()
    assert "submitted 2 trial(s) as SLURM jobs 91 (trials 0), 92 (trials 1): this cluster's" in out
    assert "array_parallelism=4 limits each job array on its own, so up to 8 trials" in err
    assert len(calls) == 2


def test_wait_asks_squeue_again_and_says_the_jobs_go_on_when_it_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    _append_event(sweep_dir, {"event": "submit", "job_id": "30", "indices": [0, 1]})
    timeout = AppSleuthError("squeue failed (exit 1): Socket timed out on send/recv operation")
    answers: list = [{"30": {0: "RUNNING", 1: "PENDING"}}, timeout, {"30": {0: "CANCELLED"}}]

    def flaky(ids):
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(slurm_module, "query_squeue", flaky)
    with pytest.raises(SpecError, match=r"poll_s must be a non-negative number .*=nan"):
        wait_slurm(sweep_dir, poll_s=float("nan"), progress=False)  # was a bare ValueError
    states = wait_slurm(sweep_dir, poll_s=0, progress=False)
    assert [s.status for s in states] == ["cancelled", "failed"]
    answers[:] = [{"30": {0: "RUNNING"}}, timeout]
    with pytest.raises(
        AppSleuthError,
        match=r"Socket timed out on send/recv operation; stopped waiting after 3 failed "
        r"attempt\(s\): the jobs go on in SLURM \('appsleuth sweep status ",
    ):
        wait_slurm(sweep_dir, poll_s=0, progress=False)


def test_nothing_to_submit_names_the_failed_trials_not_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, sweep_dir = _sweep_run_argv(tmp_path, "half")
    argv = [*run, "--dry-run"]
    assert main(argv) == 0
    first, second = trial_states(sweep_dir)
    write_fake_run(sweep_dir / first.name)
    write_fake_run(sweep_dir / second.name, status="failed", error="RuntimeError: diverged")
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "nothing to submit: 1 failed trial(s) not resubmitted (add --retry-failed" in err
    assert "every trial is complete or queued" not in err


def test_a_complete_run_of_another_spec_is_not_counted_as_its_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A sweep re-planned with another activation (not in the run directory name) over
    # the complete runs of the old plan.
    argv, sweep_dir = _sweep_run_argv(tmp_path, "re")
    assert main([*argv, "--dry-run"]) == 0
    first, second = read_plan(sweep_dir)
    old = json.loads(json.dumps(first.spec.to_dict()))
    old["model"]["activation"] = "tanh"
    write_fake_run(sweep_dir / first.name, extra={"spec": old})
    write_fake_run(sweep_dir / second.name, extra={"spec": second.spec.to_dict()})
    states = slurm_states(sweep_dir)
    assert [s.status for s in states] == ["failed", "complete"]
    assert re.search(
        r"holds a complete run of another spec \(differs in model\.activation\), not of "
        r"trial 0 of this sweep; move that run directory away",
        states[0].error or "",
    )
    capsys.readouterr()
    assert _exit_code(argv) == 1  # nothing submitted, and said why
    assert "differs in model.activation" in capsys.readouterr().err


# --- real SLURM ---------------------------------------------------------------------------


def _node_usable() -> bool:
    # A node that is down or drained would leave --wait waiting for ever.
    done = subprocess.run(
        ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, check=False
    )
    return any(s.strip("*~#") in ("idle", "mix", "alloc") for s in done.stdout.split())


@pytest.fixture(scope="module")
def slurm() -> None:
    require_component(
        "slurm (sbatch on PATH, sinfo answering, a node idle)",
        slurm_available() and _node_usable(),
    )


def _exit_code(argv: list[str]) -> int:
    # The command's own exit code, asked of click in-process (faster than a subprocess).
    rv = cli.main(args=argv, prog_name="appsleuth", standalone_mode=False)
    return rv if isinstance(rv, int) else 0


def _write_spec(path: Path, name: str, executor: dict, **search) -> Path:
    path.write_text(yaml.safe_dump(_spec(name=name, executor=executor, **search).to_dict()))
    return path


def _json_status(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.integration
def test_slurm_sweep_completes_and_resume_submits_nothing(
    slurm: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # where a stray $(touch pwned) would land
    spec_file = _write_spec(
        tmp_path / "ok.yaml", "ok", {"time_min": 10, "preamble": "echo preamble-ran"}
    )
    out = tmp_path / NASTY
    argv = ["sweep", "run", str(spec_file), "--out", str(out)]
    assert _exit_code([*argv, "--wait", "--poll-seconds", "1"]) == 0
    sweep_dir = out / "ok"
    states = _json_status(sweep_dir, capsys)
    assert [s["status"] for s in states] == ["complete", "complete"]
    for s in states:
        assert run_status(sweep_dir / s["name"]) == "complete"
        log = Path(s["log"])
        # A trial is complete once its metadata is written; its job may still be
        # exiting, and SLURM writes the task's last output line a moment later.
        deadline = time.time() + 30
        while "complete" not in log.read_text() and time.time() < deadline:
            time.sleep(0.2)
        assert "preamble-ran" in log.read_text() and "complete" in log.read_text()
    assert (sweep_dir / "results.csv").exists()
    assert not list(tmp_path.rglob("pwned"))
    assert main(argv) == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent", "submit"]


@pytest.mark.integration
def test_slurm_sweep_past_max_array_size_runs_every_trial_in_its_array(
    slurm: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The cluster keeps its MaxArraySize (1001): the limit appsleuth reads is lowered to
    # 3. A resume of a 5-trial sweep whose trials 0, 2 and 3 are complete has trials 1
    # and 4 to run: two real arrays, offsets 1 and 4, each task 0 running its own trial.
    monkeypatch.setattr(slurm_module, "_max_array_size", lambda: 3)
    lrs = [0.001, 0.002, 0.003, 0.004, 0.005]
    spec_file = _write_spec(
        tmp_path / "big.yaml", "big", {"time_min": 10}, grid={"learning_rate": lrs}
    )
    out = tmp_path / "out"
    argv = ["sweep", "run", str(spec_file), "--out", str(out)]
    assert main([*argv, "--dry-run"]) == 0
    assert "would submit 5 trial(s) as 2 job arrays" in capsys.readouterr().err
    sweep_dir = out / "big"
    plan = read_plan(sweep_dir)
    for i in (0, 2, 3):
        write_fake_run(sweep_dir / plan[i].name)
    assert _exit_code([*argv, "--wait", "--poll-seconds", "1"]) == 0
    submits = [e for e in read_journal(sweep_dir) if e["event"] == "submit"]
    assert [(e["offset"], e["indices"]) for e in submits] == [(1, [1]), (4, [4])]
    states = _json_status(sweep_dir, capsys)
    assert [s["status"] for s in states] == ["complete"] * 5
    assert [s["job_id"] for s in states] == [None, f"{submits[0]['job_id']}_0", None, None,
                                             f"{submits[1]['job_id']}_0"]  # fmt: skip
    for s in (states[1], states[4]):
        # Each task's output file is its own trial's (the worker names the trial).
        log = Path(s["log"])
        deadline = time.time() + 30
        while f"trial {s['index']} " not in log.read_text() and time.time() < deadline:
            time.sleep(0.2)
        assert f"trial {s['index']} {s['name']}: complete" in log.read_text()
        assert run_status(sweep_dir / s["name"]) == "complete"
    assert main(["sweep", "collect", str(sweep_dir)]) == 0
    results = pd.read_csv(sweep_dir / "results_full.csv")
    assert list(results["param_learning_rate"]) == lrs
    assert list(results["status"]) == ["complete"] * 5
    capsys.readouterr()
    assert main(argv) == 0
    assert "nothing to submit" in capsys.readouterr().out


@pytest.mark.integration
def test_slurm_failures_are_reported_with_their_log(
    slurm: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Trial 0 names an app that is not a class: it fails inside appsleuth.
    bad = _write_spec(
        tmp_path / "bad.yaml",
        "bad",
        {"time_min": 10},
        zip={"learning_rate": [0.003], "class_weight": [{"Tetris": 2.0}]},
    )
    # A broken environment: the job dies before appsleuth starts, leaving no run directory.
    broken = _write_spec(
        tmp_path / "broken.yaml",
        "broken",
        {"time_min": 10, "preamble": "echo no such module >&2; exit 3"},
        grid={"learning_rate": [0.003]},
    )
    out = tmp_path / "out"
    for spec_file in (bad, broken):
        code = _exit_code(
            ["sweep", "run", str(spec_file), "--out", str(out), "--wait", "--poll-seconds", "1"]
        )
        assert code == 1
    (failed,) = _json_status(out / "bad", capsys)
    assert failed["status"] == "failed" and "Tetris" in failed["error"]
    assert "Tetris" in Path(failed["log"]).read_text()
    (died,) = _json_status(out / "broken", capsys)
    assert died["status"] == "failed" and "ended without a complete run directory" in died["error"]
    assert "no such module" in Path(died["log"]).read_text()
    assert died["log"] in died["error"]
    capsys.readouterr()
    assert main(["sweep", "status", str(out / "broken")]) == 0
    assert capsys.readouterr().err.count(died["log"]) == 1  # named once, not twice
    assert main(["sweep", "status", str(out / "bad")]) == 0
    assert f"(SLURM output: {failed['log']})" in capsys.readouterr().err


@pytest.mark.integration
def test_slurm_cancel(slurm: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Held jobs never start, so cancelling them costs no training.
    spec_file = _write_spec(
        tmp_path / "held.yaml", "held", {"time_min": 5, "extra_sbatch": ["#SBATCH --hold"]}
    )
    out = tmp_path / "out"
    assert main(["sweep", "run", str(spec_file), "--out", str(out)]) == 0
    sweep_dir = out / "held"
    assert [s["status"] for s in _json_status(sweep_dir, capsys)] == ["pending", "pending"]
    # Resuming while queued submits nothing more.
    assert main(["sweep", "run", str(spec_file), "--out", str(out)]) == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert main(["sweep", "cancel", str(sweep_dir)]) == 0
    assert "cancelled SLURM job(s)" in capsys.readouterr().out
    deadline = time.time() + 30
    while True:
        statuses = [s["status"] for s in _json_status(sweep_dir, capsys)]
        if statuses == ["cancelled", "cancelled"] or time.time() > deadline:
            break
        time.sleep(0.5)
    assert statuses == ["cancelled", "cancelled"]
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent", "submit", "cancel"]
    assert main(["sweep", "cancel", str(sweep_dir)]) == 0
    assert "nothing to cancel" in capsys.readouterr().out


@pytest.mark.integration
def test_slurm_task_cancelled_on_its_own_stays_cancelled_once_squeue_forgets_it(
    slurm: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The preamble sleeps, so the task runs without training; scancel of that one task
    # makes slurmstepd write its line, which status reads once squeue (MinJobAge) forgot.
    spec_file = _write_spec(
        tmp_path / "one.yaml",
        "one",
        {"time_min": 5, "preamble": "sleep 60"},
        grid={"learning_rate": [0.003]},
    )
    out = tmp_path / "out"
    assert main(["sweep", "run", str(spec_file), "--out", str(out)]) == 0
    sweep_dir = out / "one"
    (state,) = slurm_states(sweep_dir)
    deadline = time.time() + 60
    while slurm_states(sweep_dir)[0].status != "running" and time.time() < deadline:
        time.sleep(0.3)
    assert subprocess.run(["scancel", state.job_id], check=False).returncode == 0
    assert state.log is not None
    while "CANCELLED AT" not in (
        state.log.read_text() if state.log.exists() else ""
    ) and time.time() < (deadline + 30):
        time.sleep(0.3)
    (forgotten,) = slurm_states(sweep_dir, squeue=lambda ids: {})
    assert forgotten.status == "cancelled", state.log.read_text()


@pytest.mark.integration
def test_slurm_job_submitted_by_a_killed_process_is_found_again(
    slurm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = _write_spec(
        tmp_path / "held.yaml", "lost", {"time_min": 5, "extra_sbatch": ["#SBATCH --hold"]}
    )
    out = tmp_path / "out"
    append = slurm_module._append_event

    def dies_before_the_job_id_is_written(sweep_dir, event):
        if event["event"] == "submit":
            raise _Killed
        append(sweep_dir, event)

    monkeypatch.setattr(slurm_module, "_append_event", dies_before_the_job_id_is_written)
    with pytest.raises(_Killed):
        main(["sweep", "run", str(spec_file), "--out", str(out)])
    monkeypatch.setattr(slurm_module, "_append_event", append)
    sweep_dir = out / "lost"
    assert [e["event"] for e in read_journal(sweep_dir)] == ["intent"]
    states = _json_status(sweep_dir, capsys)
    assert [s["status"] for s in states] == ["pending", "pending"]
    job_id = states[0]["job_id"].split("_")[0]
    # The same command again: the held job is recognised, nothing is submitted twice.
    assert main(["sweep", "run", str(spec_file), "--out", str(out)]) == 0
    assert "nothing to submit" in capsys.readouterr().out
    events = read_journal(sweep_dir)
    assert [e["event"] for e in events] == ["intent", "submit"]
    assert events[1]["job_id"] == job_id and events[1]["recovered"] is True
    assert main(["sweep", "cancel", str(sweep_dir)]) == 0
    assert job_id in capsys.readouterr().out


def test_worker_cli_is_what_the_script_runs() -> None:
    # The script's command must exist: python -m appsleuth sweep worker --help.
    done = subprocess.run(
        [sys.executable, "-m", "appsleuth", "sweep", "worker", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "--index" in done.stdout and "--index-offset" in done.stdout
    assert "--device [auto|cpu|gpu]" in done.stdout and "--threads" in done.stdout


def test_the_worker_adds_its_index_offset_and_refuses_one_past_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(grid={"learning_rate": [0.1, 0.2, 0.3]}), tmp_path)
    ran = []

    def run_trial(where, index, **kwargs):
        ran.append(index)
        return TrialOutcome(index=index, name="t", status="skipped", seconds=0.0)

    monkeypatch.setattr("appsleuth.sweep.worker.run_trial", run_trial)
    monkeypatch.setattr("appsleuth.cli._configure_backend", lambda threads, device: None)
    worker = ["sweep", "worker", str(sweep_dir)]
    for argv, message in (
        (["--index", "0", "--index-offset", "-1"], "--index-offset must be a non-negative "
         "integer; received --index-offset=-1"),
        (["--index", "1", "--index-offset", "2"], f"--index 1 with --index-offset 2 is trial 3, "
         f"but the plan of {sweep_dir} has trials 0..2; --index must be in 0..0 for this "
         f"offset"),
        (["--index", "0", "--index-offset", "5"], "--index 0 with --index-offset 5 is trial 5, "
         "but the plan of"),
        (["--index", "-1", "--index-offset", "1"], "--index -1 with --index-offset 1 is trial 0"),
    ):  # fmt: skip
        assert main([*worker, *argv]) == 2
        assert message in capsys.readouterr().err
    assert ran == []  # refused before any trial starts
    assert main([*worker, "--index", "0", "--index-offset", "2"]) == 0
    assert main([*worker, "--index", "1"]) == 0  # no offset: task i runs trial i
    assert ran == [2, 1]


def test_device_reaches_the_worker_command(tmp_path: Path) -> None:
    plain = render_script(tmp_path, 2, SlurmOptions())
    assert "--device" not in plain
    cpu = render_script(tmp_path, 2, SlurmOptions(), device="cpu")
    assert "sweep worker " in cpu and " --device cpu --index " in cpu
    with pytest.raises(SpecError, match=r"device must be 'auto', 'cpu' or 'gpu'; received"):
        render_script(tmp_path, 2, SlurmOptions(), device="tpu")
    with pytest.raises(AppSleuthError, match="is not a sweep directory"):
        slurm_states(Path("/nonexistent-sweep"))


def test_dry_run_with_nothing_left_and_gpus_for_cpu_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, sweep_dir = _sweep_run_argv(tmp_path, "done")
    assert main([*argv, "--dry-run", "--gpus", "1", "--device", "cpu"]) == 2
    assert "requests GPUs for trials that train on the CPU" in capsys.readouterr().err
    assert not sweep_dir.exists()  # refused before anything was written
    assert main([*argv, "--dry-run"]) == 0
    capsys.readouterr()
    for st in trial_states(sweep_dir):
        write_fake_run(sweep_dir / st.name)
    assert main([*argv, "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "nothing to submit (every trial is complete or queued)" in err
    assert "would submit" not in err


@pytest.mark.parametrize("gpus", [[], ["--gpus", "0"]])
def test_gpu_trials_on_a_job_that_requests_no_gpu_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    gpus: list[str],
) -> None:
    # Every array task would start on a node (or a share of one) without a GPU and fail.
    argv, sweep_dir = _sweep_run_argv(tmp_path, "nogpu")
    real_submit = slurm_module._submit

    def submit(*args):
        assert args[4], "submitted"  # dry_run: a test must not queue a job that fails
        return real_submit(*args)

    monkeypatch.setattr(slurm_module, "_submit", submit)
    assert main([*argv, "--device", "gpu", *gpus]) == 2
    err = capsys.readouterr().err
    assert "device 'gpu' trains every trial on a GPU, but the job requests none" in err
    assert f"(gpus={None if not gpus else 0}, and no GPU request in extra_sbatch)" in err
    assert "set gpus: 1 in the spec's executor section (or --gpus 1)" in err
    assert not sweep_dir.exists()  # refused before the directory was written
    assert main([*argv, "--device", "gpu", "--dry-run", *gpus]) == 2  # nor shown as fine
    assert "the job requests none" in capsys.readouterr().err
    assert main([*argv, "--device", "gpu", "--dry-run", "--gpus", "1"]) == 0
    assert "#SBATCH --gpus=1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "line",
    [
        "--gres=gpu:1",
        "--gres=gpu:a100:2",
        "--gpus-per-node=1",
        "-G 1",
        "--tres-per-task=gres/gpu:2",
    ],
)
def test_gpu_trials_with_gpus_requested_in_extra_sbatch_are_submitted(
    tmp_path: Path, line: str
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    options = SlurmOptions.from_options({"extra_sbatch": [f"#SBATCH {line}"]})
    sub = submit_slurm(sweep_dir, options, dry_run=True, device="gpu")
    assert f"#SBATCH {line}" in sub.script_text and " --device gpu " in sub.script_text
    constraint = SlurmOptions.from_options({"extra_sbatch": ["#SBATCH --constraint=gpu"]})
    with pytest.raises(SpecError, match=r"device 'gpu' trains every trial on a GPU, but the"):
        submit_slurm(sweep_dir, constraint, dry_run=True, device="gpu")  # a node, no GPU


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_script_sets_the_submitters_keras_backend_before_the_preamble(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # A cluster that does not export the environment (--export=NONE) would otherwise run
    # the tasks on appsleuth's default backend whatever the submitter used.
    import appsleuth.sweep.slurm as slurm

    monkeypatch.setattr(slurm, "backend_name", lambda: backend)
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    opts = SlurmOptions.from_options({"preamble": "export KERAS_BACKEND=torch"})
    lines = render_script(sweep_dir, 2, opts).splitlines()
    pinned = lines.index(f"export KERAS_BACKEND={backend}")
    assert pinned < lines.index("export KERAS_BACKEND=torch")  # the preamble may change it
