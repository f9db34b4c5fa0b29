"""The command line: subcommands, help, version, and errors as one paragraph with exit 2."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appsleuth import __version__
from appsleuth.cli import main
from appsleuth.data.load import frame_info, load_sherlock
from appsleuth.errors import AppSleuthWarning, SpecError


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["data"],
        ["data", "check"],
        ["data", "clean"],
        ["data", "synth"],
        ["demo"],
        ["train"],
        ["baselines"],
        ["predict"],
        ["report"],
        ["info"],
        ["bench"],
        *(["sweep", *sub] for sub in ([], ["plan"], ["run"], ["status"], ["collect"])),
        *(["sweep", sub] for sub in ("cancel", "worker")),
    ],
)
def test_help_on_every_command(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--help"]) == 0
    assert "Usage: appsleuth" in capsys.readouterr().out


def test_check_names_split_seed_when_it_is_out_of_range(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The message named the field "seed", which reads as train's --seed.
    assert main(["data", "check", "--rows", "60", "--split-seed", "-1"]) == 2
    assert re.search(
        r"'--split-seed': -1 is not in the range 0<=x<=4294967295", capsys.readouterr().err
    )


def test_check_refuses_an_encoding_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    # It was accepted and ignored: the user meant to name a file and forgot it.
    assert main(["data", "check", "--rows", "60", "--encoding", "latin-1"]) == 2
    assert "received --encoding latin-1 for the embedded data" in capsys.readouterr().err


def test_check_real_file_json(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(shared_data / "sherlock_mystery.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "teaching"
    assert report["findings"][0]["data"]["counts"] == {"Facebook": 121, "WhatsApp": 79}


@pytest.mark.parametrize(
    ("keep", "summary", "note"),
    [
        ("Facebook", "one class, Facebook", ""),
        (None, "no label column", "has no label column 'ApplicationName' (--label names"),
    ],
)
def test_check_reports_files_that_training_would_refuse(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], keep, summary, note
) -> None:
    import pandas as pd

    df = pd.read_csv(shared_data / "sherlock_mystery.csv")
    df = df[df["ApplicationName"] == keep] if keep else df.drop(columns="ApplicationName")
    path = tmp_path / "odd.csv"
    df.to_csv(path, index=False)
    assert main(["data", "check", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    classes = report["findings"][0]
    assert classes["key"] == "classes" and classes["severity"] == "problem"
    assert summary in classes["summary"]
    assert note in captured.err


def test_check_with_a_named_label_column(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    one_class = tmp_path / "facebook.csv"
    df = pd.read_csv(shared_data / "sherlock_mystery.csv")
    df[df["ApplicationName"] == "Facebook"].to_csv(one_class, index=False)
    # Named on purpose and present: a single class is still reported, not refused.
    assert main(["data", "check", str(one_class), "--label", "ApplicationName", "--json"]) == 0
    assert "one class, Facebook" in json.loads(capsys.readouterr().out)["findings"][0]["summary"]
    # Named on purpose and absent: a mistake, said as such.
    assert main(["data", "check", str(one_class), "--label", "Nope"]) == 2
    err = capsys.readouterr().err
    assert f"file {one_class} has no label column 'Nope'; columns found: " in err
    assert "'ApplicationName'" in err


def test_check_embedded_data_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--rows", "3000", "--split", "blocked"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "leakage" in out and "blocked" in out


def test_missing_file_is_one_paragraph_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("appsleuth: error: data file ") and "does not exist" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_invalid_option_value_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--rows", "10", "--val-fraction", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "appsleuth: invalid setting: val_fraction must be a number in (0, 1)" in err


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--split", "sideways"]) == 2
    assert "Invalid value for '--split'" in capsys.readouterr().err


def test_debug_shows_traceback(tmp_path: Path) -> None:
    from appsleuth.errors import DataError

    with pytest.raises(DataError):
        main(["--debug", "data", "check", str(tmp_path / "nope.csv")])


def test_synth_writes_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fb_wa.parquet"
    args = [
        "data",
        "synth",
        "--out",
        str(out),
        "--rows",
        "400",
        "--apps",
        "Facebook,WhatsApp",
        "--seed",
        "7",
        "--with-ids",
    ]
    assert main(args) == 0
    assert "wrote 400 synthetic rows (2 apps, seed 7)" in capsys.readouterr().out
    df = load_sherlock(out)
    assert set(df["ApplicationName"]) == {"Facebook", "WhatsApp"}
    assert frame_info(df).id_columns == ("UserId", "UUID")
    before = out.read_bytes()
    assert main(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "--force"]) == 0


def _clean_input(source: str, shared_data: Path, tmp_path: Path) -> Path:
    """A file to clean: one of the real samples, or what ``data synth`` writes."""
    if source != "synth":
        return shared_data / source
    path = tmp_path / "synth.csv"
    assert main(["data", "synth", "--out", str(path), "--rows", "400", "--with-ids"]) == 0
    return path


@pytest.mark.parametrize(
    ("source", "suffix", "options", "kwargs"),
    [
        ("sherlock_mystery.csv", ".csv", [], {}),
        ("sherlock_mystery.csv", ".parquet", ["--missing", "impute"], {"missing": "impute"}),
        (
            "sherlock_raw_sample.csv",
            ".parquet",
            ["--keep-constant-columns"],
            {"drop_constant_columns": False},
        ),
        ("synth", ".csv.gz", ["--drop-duplicates"], {"drop_duplicates": True}),
        (
            "synth",
            ".csv",
            ["--missing", "impute", "--keep-empty-columns"],
            {"missing": "impute", "drop_empty_columns": False},
        ),
    ],
)
def test_data_clean_writes_what_clean_sherlock_returns(
    source: str,
    suffix: str,
    options: list[str],
    kwargs: dict,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pandas as pd

    from appsleuth.data.clean import clean_sherlock

    data = _clean_input(source, shared_data, tmp_path)
    out = tmp_path / f"cleaned{suffix}"
    capsys.readouterr()
    assert main(["data", "clean", str(data), str(out), *options]) == 0
    expected, report = clean_sherlock(load_sherlock(data), **kwargs)
    back = load_sherlock(out)
    pd.testing.assert_frame_equal(back, expected)
    assert frame_info(back).features == frame_info(expected).features
    printed = capsys.readouterr().out
    assert f"{report.rows_before:,} -> {report.rows_after:,} rows" in printed
    for step in report.steps:
        assert f"  {step.action}: {step.detail}" in printed
    assert f"wrote {len(expected):,} rows" in printed
    # Imputing here uses every row: the report must say that train does not.
    imputed = kwargs.get("missing") == "impute"
    assert ("filled from the whole table" in printed) is imputed
    assert ("train imputes from its training rows only" in printed) is imputed


def test_data_clean_json_report(shared_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.csv"
    data = shared_data / "sherlock_mystery.csv"
    assert main(["data", "clean", str(data), str(out), "--missing", "impute", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["output"], report["rows_before"], report["rows_after"]) == (str(out), 200, 200)
    assert [s["action"] for s in report["steps"]][-1] == "impute missing values"
    assert "training rows only" in report["note"]


def test_data_clean_refuses_an_existing_output_without_force(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.csv"
    out.write_text("keep me\n")
    args = ["data", "clean", str(shared_data / "sherlock_mystery.csv"), str(out)]
    assert main(args) == 2
    assert "c.csv already exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert main([*args, "--force"]) == 0
    assert len(load_sherlock(out)) == 152


@pytest.mark.parametrize("spelling", ["same", "dotted", "link"])
def test_data_clean_never_overwrites_its_input(
    spelling: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "in.csv"
    assert main(["data", "synth", "--out", str(data), "--rows", "100"]) == 0
    before = data.read_bytes()
    out = {"same": data, "dotted": tmp_path / "." / "in.csv", "link": tmp_path / "link.csv"}
    if spelling == "link":
        out["link"].symlink_to(data)
    capsys.readouterr()
    assert main(["data", "clean", str(data), str(out[spelling]), "--force"]) == 2
    err = capsys.readouterr().err
    assert "is INPUT" in err and "never overwrites its input" in err
    assert data.read_bytes() == before


def test_data_clean_bad_options_are_one_line_errors(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(shared_data / "sherlock_mystery.csv")
    assert main(["data", "clean", data, str(tmp_path / "c.csv"), "--missing", "fill"]) == 2
    assert "Invalid value for '--missing': 'fill' is not one of 'drop', 'impute'" in (
        capsys.readouterr().err
    )
    assert main(["data", "clean", data, str(tmp_path / "c.txt")]) == 2
    assert "must end in .csv, .csv.gz or .parquet; received 'c.txt'" in capsys.readouterr().err
    assert main(["data", "clean", str(tmp_path / "nope.csv"), str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.csv does not exist" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("suffix", "writer", "error", "code"),
    [(".csv", "to_csv", KeyboardInterrupt, 130), (".parquet", "to_parquet", OSError, 2)],
)
def test_data_clean_interrupted_write_leaves_no_output(
    suffix: str,
    writer: str,
    error: type[BaseException],
    code: int,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pandas as pd

    def half_written(self, path, *args, **kwargs):
        Path(path).write_text("ApplicationName,CPU_USAGE\nFacebook,")
        raise error(28, "No space left on device") if error is OSError else error()

    monkeypatch.setattr(pd.DataFrame, writer, half_written)
    out = tmp_path / f"c{suffix}"
    assert main(["data", "clean", str(shared_data / "sherlock_mystery.csv"), str(out)]) == code
    assert list(tmp_path.iterdir()) == []


def test_sizes_beyond_memory_are_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "huge.csv"
    assert main(["data", "synth", "--out", str(out), "--rows", "100000000000"]) == 2
    err = capsys.readouterr().err
    assert "appsleuth: error: out of memory: " in err and "--rows" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["data", "synth", "--out", "{tmp}/x.csv"], "--rows must be at most 1,000,000,000,000"),
        (["data", "check"], "rows must be at most 1,000,000,000,000"),
        (["train", "--out", "{tmp}/runs"], "rows must be at most 1,000,000,000,000"),
    ],
)
def test_row_counts_beyond_any_memory_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command, expected
) -> None:
    # Beyond 2**63 rows the generator's integer arithmetic overflowed: a traceback.
    argv = [a.format(tmp=tmp_path) for a in command] + ["--rows", str(10**23)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and str(10**23) in err
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "cache"])


def test_xla_resource_exhaustion_counts_as_out_of_memory() -> None:
    from appsleuth.cli import _out_of_memory

    class JaxRuntimeError(RuntimeError):  # As jax.errors names it.
        pass

    message = "RESOURCE_EXHAUSTED: Out of memory allocating 144000000000 bytes.\nmore"
    assert _out_of_memory(JaxRuntimeError(message)) == message.splitlines()[0]
    assert _out_of_memory(JaxRuntimeError("INTERNAL: something else")) is None
    assert _out_of_memory(ValueError("RESOURCE_EXHAUSTED")) is None


def test_tensorflow_and_torch_out_of_memory_are_named_as_such() -> None:
    # On those backends a layer too large for the machine was a traceback (exit code 1).
    from appsleuth.cli import _out_of_memory

    class ResourceExhaustedError(Exception):  # tf.errors.ResourceExhaustedError's name
        pass

    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError (CUDA)
        pass

    tf_text = (
        "{{function_node __wrapped__StatelessRandomNormalV2}} OOM when allocating tensor "
        "with shape[60000,60000] and type float on /job:localhost/replica:0/task:0/device:CPU:0"
    )
    assert _out_of_memory(ResourceExhaustedError(tf_text)) == tf_text
    cuda_text = "CUDA out of memory. Tried to allocate 13.41 GiB."
    assert _out_of_memory(OutOfMemoryError(cuda_text)) == cuda_text
    torch_cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 14400000000 bytes. Error code 12 (Cannot allocate memory)"
    )
    assert _out_of_memory(torch_cpu) == (
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 14400000000 bytes. "
        "Error code 12 (Cannot allocate memory)"
    )
    assert _out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


def test_a_backend_out_of_memory_in_train_is_one_paragraph(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import appsleuth.run

    class ResourceExhaustedError(Exception):
        pass

    def out_of_memory(*args, **kwargs):
        raise ResourceExhaustedError("OOM when allocating tensor with shape[60000,60000]")

    monkeypatch.setattr(appsleuth.run, "train", out_of_memory)
    assert main(["train", "--rows", "100", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "appsleuth: error: out of memory: OOM when allocating tensor" in err
    assert "--batch-size" in err and "Traceback" not in err


def test_synth_unknown_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "x.csv"), "--apps", "Gmail,Tetris"]) == 2
    assert "Tetris" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--apps", "Moriarty"], r"--apps names one app \(Moriarty\); a file of one app"),
        (["--apps", "Facebook,Facebook"], r"--apps names one app \(Facebook, given 2 times\)"),
        (["--rows", "5"], r"--rows 5 is fewer than the 18 apps asked for, .* use --rows 18"),
        (
            ["--rows", "2", "--apps", "Facebook,WhatsApp,Moriarty"],
            r"--rows 2 is fewer than the 3 apps asked for",
        ),
    ],
)
def test_synth_refuses_files_missing_apps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args, expected
) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "x.csv"), *args]) == 2
    assert re.search(expected, capsys.readouterr().err)
    assert not (tmp_path / "x.csv").exists()


def test_sweep_examples_writes_the_studies_where_the_readme_runs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "examples"]) == 0
    assert "examples/sweeps/scan-layers.yaml" in capsys.readouterr().out.splitlines()
    assert main(["sweep", "plan", "examples/sweeps/scan-layers.yaml"]) == 0
    assert main(["sweep", "examples"]) == 0
    assert "examples/sweeps/scan-layers.yaml (exists; kept as it is)" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["sweep", "examples", "file"]) == 2
    assert "file" in capsys.readouterr().err


_LIGHT_START = """
import sys
import click
import appsleuth
from appsleuth.cli import cli

def helps(command, path):
    yield path
    for name in getattr(command, "commands", {}):
        yield from helps(command.commands[name], [*path, name])

for path in helps(cli, []):
    try:
        cli.main([*path, "--help"], prog_name="appsleuth", standalone_mode=False)
    except click.exceptions.Exit:
        pass
heavy = ("keras", "jax", "pandas", "pyarrow", "sklearn", "matplotlib", "scipy", "tensorflow")
print(" ".join(sorted(m for m in heavy if m in sys.modules)) or "none")
"""


def test_import_and_help_do_not_import_the_heavy_libraries() -> None:
    # `import appsleuth` took 0.7 s and `appsleuth --help` 1.5 s, mostly pandas: the
    # package and every command's --help (what tab completion runs too) stay light.
    src = str(Path(__import__("appsleuth").__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_START], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "none"


def test_shell_completion_as_the_readme_sets_it_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's eval "$(_APPSLEUTH_COMPLETE=bash_source appsleuth)" and what it then asks.
    monkeypatch.setenv("_APPSLEUTH_COMPLETE", "bash_source")
    with pytest.raises(SystemExit, match=r"^0$"):
        main([])
    assert "complete -o nosort -F _appsleuth_completion appsleuth" in capsys.readouterr().out
    monkeypatch.setenv("_APPSLEUTH_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "appsleuth sweep st")
    monkeypatch.setenv("COMP_CWORD", "2")
    with pytest.raises(SystemExit, match=r"^0$"):
        main([])
    assert capsys.readouterr().out.split() == ["plain,status"]


def test_console_script_in_a_subprocess(shared_data: Path) -> None:
    # The real entry point: exit status and stderr as a user's shell sees them.
    bad = subprocess.run(
        [sys.executable, "-m", "appsleuth", "data", "check", "/no/such.csv"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "appsleuth: error: data file /no/such.csv does not exist"
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "appsleuth",
            "data",
            "check",
            "--json",
            str(shared_data / "sherlock_raw_sample.csv"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["layout"] == "raw"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["data", "synth", "--rows", "50", "--out", "{file}/x.csv"], "cannot use {file}"),
        (
            ["train", "--rows", "3000", "--epochs", "1", "--quiet", "--out", "{file}/runs"],
            "cannot use {file}",
        ),
    ],
)
def test_unusable_output_path_is_a_clear_error(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "good.csv"
    file.write_text("keep me\n")
    values = {"file": str(file), "tmp": str(tmp_path)}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert match.format(**values) in err and "is an existing file, not a directory" in err
    assert file.read_text() == "keep me\n"


def test_early_stopping_flag_keeps_the_configs_other_settings(tmp_path: Path) -> None:
    from appsleuth.cli import _run_spec_from_options

    config = tmp_path / "c.yaml"
    config.write_text(
        "train:\n  early_stopping: {monitor: val_accuracy, min_delta: 0.01, restore_best: false}\n"
    )
    spec = _run_spec_from_options(config, {"train": {"early_stopping": {"patience": 3}}})
    es = spec.train.early_stopping
    assert (es.monitor, es.min_delta, es.restore_best, es.patience) == (
        "val_accuracy",
        0.01,
        False,
        3,
    )
    plain = _run_spec_from_options(None, {"train": {"early_stopping": {"patience": 2}}})
    assert plain.train.early_stopping.patience == 2
    assert plain.train.early_stopping.monitor == "val_loss"


def test_group_column_needs_the_group_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--rows", "500", "--epochs", "1", "--group-column", "UserId"]) == 2
    assert "--group-column applies to the group split" in capsys.readouterr().err
    # data check ignored it, and reported the random split's leakage without a word.
    assert main(["data", "check", "--rows", "500", "--group-column", "UserId"]) == 2
    err = capsys.readouterr().err
    assert "--group-column applies to the group split; received --group-column UserId with " in err
    assert "--split random (add --split group)" in err


def test_sigterm_during_a_forced_retrain_puts_the_complete_run_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # kill, scancel and a SLURM time limit send SIGTERM: the run that --force replaces
    # must not stay set aside, where predict and report do not see it.
    run_dir = tmp_path / "exp" / "model_1H4N_lr0.0003_bs32_e2"
    run_dir.mkdir(parents=True)
    (run_dir / ".appsleuth-run").write_text("")
    results = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7}
    before = json.dumps({"status": "complete", "last_results": results})
    (run_dir / "model_metadata.json").write_text(before)
    import appsleuth.model

    build_model = appsleuth.model.build_model

    def terminated(*a, **k):  # SIGTERM arrives once the old run is set aside
        os.kill(os.getpid(), signal.SIGTERM)
        return build_model(*a, **k)

    monkeypatch.setattr(appsleuth.model, "build_model", terminated)

    # Without appsleuth's own handler, SIGTERM would end the test run: ignore it instead.
    def ignore(signum, frame) -> None:
        del signum, frame

    previous = signal.signal(signal.SIGTERM, ignore)
    try:
        args = ["train", "--hidden", "4", "--epochs", "2", "--rows", "600", "--quiet", "--force"]
        assert main([*args, "--out", str(tmp_path / "exp")]) == 130
        assert signal.getsignal(signal.SIGTERM) is ignore  # the caller's handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "interrupted" in capsys.readouterr().err
    assert (run_dir / "model_metadata.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [run_dir.name]


def _generic_file(shared_data: Path, tmp_path: Path) -> Path:
    """The 2-app teaching file with its label column renamed: a generic table."""
    import pandas as pd

    df = pd.read_csv(shared_data / "sherlock_mystery.csv", index_col=0)
    path = tmp_path / "generic.csv"
    df.rename(columns={"ApplicationName": "app"}).to_csv(path, index=False)
    return path


def test_baselines_take_the_label_column_of_a_generic_file(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's generic layout is "any table with a label column (--label)", and the
    # missing-label error says "(CLI: --label)": train and baselines must accept it.
    data = str(_generic_file(shared_data, tmp_path))
    assert main(["baselines", "--data", data, "--label", "app", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results["decision_tree"]["per_class"]) == {"Facebook", "WhatsApp"}
    assert main(["baselines", "--data", data]) == 2
    assert "no label column 'ApplicationName'" in capsys.readouterr().err


def test_baselines_read_the_data_and_split_of_a_config(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A user who trains with --config run.yaml compares with the same data and split.
    data = _generic_file(shared_data, tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {{path: {json.dumps(str(data))}, label: app, split: {{val_fraction: 0.5}}}}\n"
        "model: {hidden: [4]}\n"
    )

    def metrics(*args: str) -> dict:
        capsys.readouterr()
        assert main(["baselines", *args, "--json"]) == 0, capsys.readouterr().err
        results = json.loads(capsys.readouterr().out)
        return {name: {**m, "fit_seconds": None} for name, m in results.items()}

    options = ["--data", str(data), "--label", "app"]
    from_config = metrics("--config", str(config))
    assert from_config == metrics(*options, "--val-fraction", "0.5")
    assert from_config != metrics(*options)  # the config's split, not the default one
    # Options override the config, as in train.
    overridden = metrics("--config", str(config), "--val-fraction", "0.3")
    assert overridden == metrics(*options, "--val-fraction", "0.3")


def test_train_label_option_reaches_the_spec(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appsleuth.run
    from appsleuth.errors import AppSleuthError

    seen = []

    def fake_train(spec, **kwargs):
        seen.append(spec)
        raise AppSleuthError("stop here")

    monkeypatch.setattr(appsleuth.run, "train", fake_train)
    data = str(_generic_file(shared_data, tmp_path))
    assert main(["train", "--data", data, "--label", "app", "--out", str(tmp_path)]) == 2
    assert seen[0].data.label == "app" and seen[0].data.path == data


@pytest.mark.parametrize(
    ("config_data", "option", "expected"),
    [
        ("{rows: 3000}", {"path": "mine.csv"}, ("mine.csv", None)),
        ("{path: mine.csv}", {"rows": 600}, (None, 600)),
        ("{rows: 3000}", {}, (None, 3000)),
    ],
)
def test_data_and_rows_options_replace_the_configs_data_source(
    tmp_path: Path, config_data: str, option: dict, expected: tuple
) -> None:
    # "options override it": a run's own spec.yaml (rows of embedded data) used as
    # --config with --data must train on the file, not fail on 'rows with a path'.
    from appsleuth.cli import _run_spec_from_options

    config = tmp_path / "run.yaml"
    config.write_text(f"data: {config_data}\nmodel: {{hidden: [4]}}\n")
    spec = _run_spec_from_options(config, {"data": option})
    assert (spec.data.path, spec.data.rows) == expected
    assert spec.model.hidden == (4,)


def test_data_and_rows_options_together_are_still_refused(tmp_path: Path) -> None:
    from appsleuth.cli import _run_spec_from_options
    from appsleuth.errors import SpecError

    with pytest.raises(SpecError, match="rows sets the size of the embedded data"):
        _run_spec_from_options(None, {"data": {"path": "mine.csv", "rows": 600}})


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        # data check read the whole file and said nothing of --rows.
        (
            ["data", "check", "{mystery}", "--rows", "100"],
            "--rows sets the size of the embedded data; a data file is used whole: received "
            "FILE {mystery} with --rows 100",
        ),
        # Each reported on, or trained on, the embedded data with its own label instead.
        (
            ["data", "check", "--rows", "100", "--label", "app"],
            "--label names the label column of a data file, and no data file was given: "
            "received label 'app' for the embedded data",
        ),
        (
            ["train", "--rows", "100", "--epochs", "1", "--label", "app"],
            "--label names the label column of a data file",
        ),
        (
            ["baselines", "--config", "{config}"],
            "the config's data.label names the label column of a data file",
        ),
    ],
    ids=["check-file-rows", "check-label", "train-label", "baselines-config-label"],
)
def test_options_for_the_other_data_source_are_refused_not_ignored(
    argv: list[str],
    match: str,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where train would write runs/
    config = tmp_path / "run.yaml"
    config.write_text("data: {label: app}\n")
    values = {"mystery": str(shared_data / "sherlock_mystery.csv"), "config": str(config)}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert match.format(**values) in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "baselines"])
def test_the_spec_of_a_run_trained_on_a_data_frame_needs_its_data_file(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where train would write runs/
    # aps.train(spec, data=df) writes path: null; --config read that as the embedded
    # synthetic data and retrained on generated rows instead of the run's real ones.
    from appsleuth.cli import _run_spec_from_options
    from appsleuth.spec import RunSpec

    run = tmp_path / "model_1H18N_lr0.0003_bs32_e30"
    run.mkdir()
    (run / "spec.yaml").write_text(json.dumps(RunSpec().to_dict()))
    meta = {"status": "complete", "dataset": "sherlock_18apps.csv", "synthetic": False}
    (run / "model_metadata.json").write_text(json.dumps(meta))
    assert main([command, "--config", str(run / "spec.yaml")]) == 2
    err = capsys.readouterr().err
    assert (
        f"{run / 'spec.yaml'} is the spec of a run trained in Python on a data frame "
        f"(sherlock_18apps.csv), so it names no data file" in err
    )
    assert "add --data FILE (or --rows N for the embedded data)" in err
    given = _run_spec_from_options(run / "spec.yaml", {"data": {"path": "mine.csv"}})
    assert given.data.path == "mine.csv"
    assert _run_spec_from_options(run / "spec.yaml", {"data": {"rows": 600}}).data.rows == 600
    # Real rows given as prepared=, recorded (before the fix) as the embedded data: still
    # no spec of the embedded data.
    source = {"kind": "embedded", "path": None, "rows": 50}
    (run / "model_metadata.json").write_text(json.dumps({**meta, "data_source": source}))
    with pytest.raises(SpecError, match="trained in Python on a data frame"):
        _run_spec_from_options(run / "spec.yaml", {})
    # A run of the embedded data: its spec reads that data again.
    (run / "model_metadata.json").write_text(json.dumps({**meta, "synthetic": True}))
    assert _run_spec_from_options(run / "spec.yaml", {}).data.path is None


def _run_of_a_frame(tmp_path: Path, spec: dict, **meta: object) -> Path:
    run = tmp_path / "model_1H18N_lr0.0003_bs32_e30"
    run.mkdir()
    (run / "spec.yaml").write_text(json.dumps(spec))
    (run / "model_metadata.json").write_text(json.dumps({"status": "complete", **meta}))
    return run / "spec.yaml"


@pytest.mark.parametrize("command", ["train", "baselines"])
def test_the_spec_of_a_run_of_its_own_embedded_data_prepares_the_data_once(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Telling the demo's frame from other rows takes preparing the spec's data; the
    # command trained (or fitted) on it after preparing it all again.
    monkeypatch.chdir(tmp_path)
    import appsleuth.run
    from appsleuth.errors import AppSleuthError
    from appsleuth.run import data_fingerprint, load_data, prepare_run_data
    from appsleuth.spec import RunSpec

    spec = RunSpec.from_dict({"data": {"rows": 300}})
    meta = {
        "dataset": "synthetic-sherlock18(seed=0)",
        "synthetic": True,
        "data_source": {"kind": "data frame", "path": None, "rows": 300},
        "data_fingerprint": data_fingerprint(prepare_run_data(spec, load_data(spec))),
    }
    config = _run_of_a_frame(tmp_path, spec.to_dict(), **meta)
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return prepare_run_data(*args, **kwargs)

    def stop(*args, **kwargs):
        raise AppSleuthError("stopped before training")

    monkeypatch.setattr(appsleuth.run, "prepare_run_data", counted)
    monkeypatch.setattr(appsleuth.run, "_prepare_run_dir", stop)  # no model is trained
    code = main([command, "--config", str(config)])
    err = capsys.readouterr().err
    assert len(calls) == 1
    if command == "train":
        assert code == 2 and "stopped before training" in err
        assert "appsleuth: data synthetic-sherlock18(seed=0): " in err  # what training sees
    else:
        assert code == 0


def test_the_spec_of_a_run_trained_on_generated_rows_of_another_size_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tutorial trains aps.train(spec, data=aps.embedded_data(60000)): its spec.yaml
    # says path: null, rows: null, and --config retrained on the 273,129 default rows.
    monkeypatch.chdir(tmp_path)
    from appsleuth.cli import _run_spec_from_options
    from appsleuth.run import data_fingerprint, load_data, prepare_run_data
    from appsleuth.spec import RunSpec

    spec = RunSpec.from_dict({"data": {"rows": 600}})
    meta = {
        "dataset": "synthetic-sherlock18(seed=0)",
        "synthetic": True,
        "data_source": {"kind": "data frame", "path": None, "rows": 300},
        "data_fingerprint": "0123456789abcdef",
    }
    config = _run_of_a_frame(tmp_path, spec.to_dict(), **meta)
    with pytest.raises(SpecError, match=r"run trained in Python on a data frame \(300 rows of "):
        _run_spec_from_options(config, {})
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "that is not the data the spec names (the embedded data at 600 rows" in err
    assert "add --rows N (e.g. --rows 300 for embedded_data(300))" in err
    assert not (tmp_path / "runs").exists()
    assert _run_spec_from_options(config, {"data": {"rows": 300}}).data.rows == 300
    # The demo's baseline: a frame that is the spec's own embedded data retrains as it was.
    here = data_fingerprint(prepare_run_data(spec, load_data(spec)))
    (config.parent / "model_metadata.json").write_text(
        json.dumps({"status": "complete", **meta, "data_fingerprint": here})
    )
    assert _run_spec_from_options(config, {}).data.rows == 600


def test_a_runs_relative_data_path_missing_here_names_the_file_the_run_read(
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # spec.yaml keeps the path as given (relative to where train ran): from another
    # directory --config only said the file does not exist.
    from appsleuth.cli import _run_spec_from_options

    read = str(shared_data / "sherlock_mystery.csv")
    spec = {"data": {"path": "data/sherlock_mystery.csv", "label": "ApplicationName"}}
    source = {"kind": "file", "path": read, "rows": 100}
    config = _run_of_a_frame(tmp_path, spec, synthetic=False, data_source=source)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(config)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"data file data/sherlock_mystery.csv does not exist in {tmp_path}: {config} gives it "
        f"relative to the directory its run was trained from, where it was {read}; run from "
        f"there, or add --data {read}"
    ) in err
    given = _run_spec_from_options(config, {"data": {"path": read}})
    assert given.data.path == read
    # Another file of that name here is what a relative path reads: said, not silent.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sherlock_mystery.csv").write_text("x\n")
    with pytest.warns(AppSleuthWarning, match=r"data file data/sherlock_mystery.csv is "):
        assert _run_spec_from_options(config, {}).data.path == "data/sherlock_mystery.csv"


def test_label_with_a_data_file_is_still_taken(tmp_path: Path) -> None:
    from appsleuth.cli import _run_spec_from_options

    spec = _run_spec_from_options(None, {"data": {"path": "mine.csv", "label": "app"}})
    assert (spec.data.path, spec.data.label) == ("mine.csv", "app")


def test_predict_help_says_how_rows_with_missing_values_are_handled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It said such rows are always skipped; a run trained with missing: impute fills them.
    assert main(["predict", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "filled with the run's fill values if it was trained with missing: impute" in out
    assert "(--out preds.csv: preds.skipped.csv)" in out


def test_sweep_help_says_an_array_task_is_a_trial_less_its_offset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Both said the trial index is the array task id, untrue in a sweep of offset arrays.
    assert main(["sweep", "plan", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "index = SLURM array index, plus the array's offset" in out
    assert main(["sweep", "worker", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "The array task id: the trial's index, less" in out


def test_a_layer_too_large_for_any_machine_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # XLA aborted the whole process on it (no message, exit -6), before the spec checked it.
    args = ["train", "--hidden", "100000000000000000", "--rows", "50", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "appsleuth: invalid setting: hidden layer widths must keep each layer under" in err
    assert "received hidden=[100000000000000000]" in err


def _options(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    import click

    if isinstance(command, click.Group):
        return [o for name, sub in command.commands.items() for o in _options(sub, (*path, name))]
    return [(" ".join(path), p) for p in command.params if isinstance(p, click.Option)]


# Options whose absence means "all" or "nothing" rather than a default value.
_NO_DEFAULT = {"--config", "--apps", "--features", "--positive", "--compare"}


def test_every_option_says_its_default() -> None:
    from appsleuth.cli import cli

    # bench --rows/--epochs, train --dropout and the SLURM options did not say theirs.
    silent = [
        f"{where} {option.opts[0]}"
        for where, option in _options(cli)
        if not option.is_flag
        and not option.required
        and not option.show_default
        and option.opts[0] not in _NO_DEFAULT
        and "default" not in (option.help or "")
    ]
    assert silent == []


def test_defaults_said_in_help_are_the_real_ones() -> None:
    from appsleuth.bench import BenchSettings
    from appsleuth.cli import cli
    from appsleuth.spec import ModelSpec
    from appsleuth.sweep.slurm import SlurmOptions

    helps = {f"{where} {o.opts[0]}": o.help for where, o in _options(cli)}
    full, quick = BenchSettings(), BenchSettings.quick()
    assert f"(default: {full.rows:,}; {quick.rows:,} with --quick)" in helps["bench --rows"]
    assert f"(default: {full.epochs}; {quick.epochs} with --quick)" in helps["bench --epochs"]
    assert f"else {SlurmOptions().time_min})" in helps["sweep run --time-min"]
    assert f"(default: {ModelSpec().dropout:g})" in helps["train --dropout"]


def test_baselines_say_what_they_fit_and_how_long_it_took(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from appsleuth import cli

    # Logistic regression ran over a minute on the full table with nothing on the
    # screen, and the fit time it measured was never shown.
    notes: list[str] = []
    monkeypatch.setattr(cli, "_progress_note", notes.append)
    data = str(_generic_file(shared_data, tmp_path))
    assert main(["baselines", "--data", data, "--label", "app"]) == 0
    assert notes[0].startswith("fitting logistic_regression on ")
    assert notes[1].startswith("fitting decision_tree on ")
    out = capsys.readouterr().out
    assert re.search(r"logistic_regression \(random split, fitted in \d+\.\d s\)", out)


def test_sweep_status_shows_the_spread_over_seeds_and_a_lead_within_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_analysis import fake_sweep

    # batch_size 16 leads on the mean by 0.015, its seeds lie 0.06 apart: the table
    # showed each trial alone, and the luckiest seed read as the best setting.
    accs = {16: (0.90, 0.96), 32: (0.92, 0.91)}
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}, "repeats": 2},
        lambda i, p: {"final_acc": accs[p["batch_size"]][i % 2]},
    )
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    out, err = capsys.readouterr()
    assert "settings across seeds" in out
    assert re.search(r"16\s+│\s+2 of 2\s+│\s+0\.9300 ± 0\.0424\s+│\s+0\.9000 – 0\.9600", out)
    assert re.search(r"32\s+│\s+2 of 2\s+│\s+0\.9150 ± 0\.0071\s+│\s+0\.9100 – 0\.9200", out)
    assert (
        "the best setting (batch_size=16) leads the runner-up (batch_size=32) by 0.0150 in "
        "mean validation accuracy, no more than the seed-to-seed standard deviation (0.0424)"
    ) in " ".join(err.split())
    # collect, which writes results.csv, shows the same.
    assert main(["sweep", "collect", str(sweep_dir)]) == 0
    out, err = capsys.readouterr()
    assert "settings across seeds" in out and "seed-to-seed" in err
    # A sweep of seeds alone, varying nothing else, repeats its one setting.
    alone = fake_sweep(tmp_path / "alone", {"repeats": 3}, lambda i, p: {"final_acc": 0.8 + i / 50})
    assert main(["sweep", "status", str(alone)]) == 0
    assert re.search(
        r"3 of 3\s+│\s+0\.8200 ± 0\.0200\s+│\s+0\.8000 – 0\.8400", capsys.readouterr().out
    )
    # Without repeated seeds there is no spread to show.
    single = fake_sweep(tmp_path / "one", {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    assert main(["sweep", "status", str(single)]) == 0
    out, err = capsys.readouterr()
    assert "settings across seeds" not in out and "seed-to-seed" not in err


def test_sweep_status_and_collect_read_the_plan_once_for_the_seeds_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import appsleuth.sweep.store as store
    from tests.test_analysis import fake_sweep

    # The seeds table read the plan (checking every trial's spec) three times more and
    # every run directory again: 'sweep status' of 600 trials took 6 s instead of 3.3 s.
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [16, 32]}, "repeats": 2}, lambda i, p: {}
    )
    plans, metadata = [], []
    read_plan, read_metadata = store.read_plan, store.read_metadata
    monkeypatch.setattr(store, "read_plan", lambda d: plans.append(d) or read_plan(d))
    monkeypatch.setattr(store, "read_metadata", lambda d: metadata.append(d) or read_metadata(d))
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    assert "settings across seeds" in capsys.readouterr().out
    assert len(plans) == 1 and len(metadata) == 4
    plans.clear()
    metadata.clear()
    assert main(["sweep", "collect", str(sweep_dir)]) == 0  # it prints the table too
    assert "settings across seeds" in capsys.readouterr().out
    assert len(plans) == 1 and len(metadata) == 4


@pytest.mark.parametrize(("option", "hidden"), [("", ()), (" ", ()), ("4,2", (4, 2))])
def test_hidden_option_says_what_a_spec_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, hidden: tuple
) -> None:
    import appsleuth.run

    specs = []
    monkeypatch.setattr(appsleuth.run, "train", lambda spec, **kwargs: specs.append(spec))
    # --hidden '' was refused ("without empty items") while model.hidden: [] trains.
    args = ["train", "--hidden", option, "--rows", "50", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    assert specs[0].model.hidden == hidden
