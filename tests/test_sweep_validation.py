"""Sweeps: every malformed spec, manifest or data path is refused with a clear SpecError or
DataError (exit code 2 from the CLI), and a trial that fails before its run directory
exists is recorded as failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from appsleuth.cli import main
from appsleuth.data.load import frame_info
from appsleuth.data.tables import embedded_data, embedded_stand_in
from appsleuth.errors import AppSleuthError, DataError, SpecError
from appsleuth.run import load_data, prepare_run_data
from appsleuth.sweep import (
    ExecutorSpec,
    SweepSpec,
    collect_results,
    prepare_sweep_dir,
    read_plan,
    run_local,
    run_trial,
    trial_states,
)
from appsleuth.sweep.space import parse_distribution
from appsleuth.sweep.store import check_data_files

SMALL = {"rows": 2000, "synth_seed": 4}
BASE = {"model": {"hidden": [6]}, "train": {"epochs": 2, "batch_size": 64, "learning_rate": 0.003}}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _spec_dict(**kwargs: Any) -> dict[str, Any]:
    return {"name": "t", "data": SMALL, "base": BASE, **kwargs}


def _spec(**kwargs: Any) -> SweepSpec:
    return SweepSpec.from_dict(_spec_dict(**kwargs))


def test_a_label_without_a_data_file_is_refused_not_ignored() -> None:
    # The trials trained on the embedded data with its own label, and the sweep recorded
    # label 'app' as if it had been used.
    with pytest.raises(
        SpecError,
        match=r"data.label names the label column of a data file, "
        r"and data.path is null .*received label='app' \(set data.path",
    ):
        _spec(data={**SMALL, "label": "app"})
    assert _spec(data={"path": "mine.csv", "label": "app"}).data.label == "app"


# --- sections of the wrong type (1, 2, 3) ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"base": [1]},
            r"base must be a mapping with model and train sections.*received base=\[1\]",
        ),
        ({"base": None}, r"base must be a mapping .*received base=None"),
        ({"data": [1]}, r"data must be a mapping of data fields .*received data=\[1\]"),
        ({"data": None}, r"data must be a mapping of data fields .*received data=None"),
        ({"data": "x.csv"}, r"data must be a mapping .*received data='x.csv'"),
        (
            {"executor": 5},
            r"executor must be a mapping \(kind: local or slurm.*received executor=5",
        ),
        ({"executor": None}, r"executor must be a mapping .*received executor=None"),
        ({"executor": [1]}, r"executor must be a mapping .*received executor=\[1\]"),
        (
            {"executor": {"kind": "slurm", "options": [1, 2]}},
            r"executor options must be a mapping of SLURM options .*received options=\[1, 2\]",
        ),
        (
            {"executor": {"kind": "slurm", "options": "abc"}},
            r"executor options must be a mapping .*received options='abc'",
        ),
        ({"random": 0}, r"random must be \{n: N, .*received random=0"),
        ({"grid": [1]}, r"grid must map parameter names to lists; received grid=\[1\]"),
    ],
)
def test_sections_of_the_wrong_type(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(**kwargs)


def test_sections_of_the_wrong_type_in_the_python_api() -> None:
    with pytest.raises(SpecError, match=r"base must be a mapping .*received base=\[1\]"):
        SweepSpec(name="t", base=[1])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"executor must be a mapping .*received executor=5"):
        SweepSpec(name="t", executor=5)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"executor options must be a mapping .*options=\[1\]"):
        ExecutorSpec(kind="slurm", options=[1])  # type: ignore[arg-type]


# --- executor fields (3, 4) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        (
            {"kind": "local", "worker": 4},
            r"unknown executor field\(s\) 'worker' \(did you mean workers\?\); valid fields: "
            r"kind, workers, "
            r"threads_per_trial, device, and for SLURM partition, .*; received worker=4",
        ),
        (
            {"kind": "slurm", "partitoin": "debug"},
            r"unknown executor field\(s\) 'partitoin' \(did you mean partition\?\); "
            r".*received partitoin='debug'",
        ),
        (
            {"kind": "slurm", "options": {"worker": 2}},
            r"unknown executor field\(s\) 'worker' \(did you mean workers\?\); .*received "
            r"worker=2",
        ),
        # SlurmOptions' own checks of the values surface at spec load.
        (
            {"kind": "slurm", "time_min": "1h"},
            r"time_min must be a positive integer; received time_min='1h'",
        ),
        (
            {"kind": "slurm", "options": {"mem_gb": -1}},
            r"mem_gb must be a positive number; received mem_gb=-1",
        ),
        (
            {"kind": "local", "partition": "a b"},
            r"partition must be letters, digits, .*received partition='a b'",
        ),
        (
            {"kind": "slurm", "partition": "a", "options": {"partition": "b"}},
            r"executor field\(s\) 'partition' are given both in executor and in "
            r"executor.options; .*received partition='a' and options.partition='b'",
        ),
    ],
)
def test_executor_fields(executor: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(executor=executor)


def test_executor_fields_that_are_valid() -> None:
    local = _spec(executor={"kind": "local", "workers": 2, "threads_per_trial": 1})
    assert local.executor.workers == 2 and local.executor.options == {}
    # A local spec may hold SLURM options for 'sweep run --executor slurm'.
    both = _spec(executor={"kind": "local", "partition": "short", "options": {"time_min": 5}})
    assert both.executor.options == {"partition": "short", "time_min": 5}
    slurm = _spec(executor={"kind": "slurm", "options": None})
    assert slurm.executor.kind == "slurm" and slurm.executor.options == {}
    assert _spec(executor="slurm").executor.kind == "slurm"
    again = SweepSpec.from_dict(both.to_dict())  # the round trip through sweep.yaml
    assert again.executor == both.executor


# --- keys that are not text (5) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (
            {**_spec_dict(), 1: "a", "colour": "red"},
            r"the keys of the sweep spec must be field or parameter names \(text\); received "
            r"the key 1 \(int\) in the sweep spec",
        ),
        (
            _spec_dict(grid={1: ["a"], "hidden": [2, 3]}),
            r"the keys of grid must be .*received the key 1 \(int\) in grid",
        ),
        (
            _spec_dict(zip={True: [1], "epochs": [2]}),
            r"the keys of zip must be .*received the key True \(bool\) in zip",
        ),
        (
            _spec_dict(data={**SMALL, 3: "x", "path": None}),
            r"received the key 3 \(int\) in data",
        ),
        (
            _spec_dict(base={"model": {2: 1, "hidden": [2]}}),
            r"received the key 2 \(int\) in base.model",
        ),
        (
            _spec_dict(random={"n": 2, "params": {1: "uniform(0, 1)", "momentum": [0.1]}}),
            r"received the key 1 \(int\) in random.params",
        ),
        (
            _spec_dict(executor={"kind": "slurm", 5: 1, "qos": "x"}),
            r"received the key 5 \(int\) in executor",
        ),
    ],
)
def test_keys_that_are_not_text(d: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SweepSpec.from_dict(d)


def test_mixed_keys_in_a_yaml_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("name: t\n1: a\ncolour: red\n")
    assert main(["sweep", "plan", str(spec_file)]) == 2
    err = capsys.readouterr().err
    assert "the keys of the sweep spec must be field or parameter names" in err
    assert "Traceback" not in err


def test_keys_are_checked_through_yaml_aliases() -> None:
    # A YAML alias inside itself: checked once, then the usual message about hidden.
    d = yaml.safe_load("name: t\ngrid: {hidden: &a [1, *a]}\n")
    with pytest.raises(SpecError, match=r"hidden must be a list of positive layer widths"):
        SweepSpec.from_dict(d)
    shared = yaml.safe_load("name: t\nbase: {model: {hidden: &a [3]}}\ngrid: {hidden: [*a]}\n")
    assert SweepSpec.from_dict(shared).plan().names() == ["model_1H3N_lr0.0003_bs32_e30"]


# --- distribution bounds (6) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "loguniform(1e-4, 1e400)",
            r"random.x: the bounds of loguniform must be finite numbers.*"
            r"received 'loguniform\(1e-4, 1e400\)'",
        ),
        ("uniform(-1e400, 1)", r"random.x: the bounds of uniform must be finite"),
        ("uniform(-1e308, 1e308)", r"random.x: the bounds of uniform must be finite"),
        (f"uniform(0, {10**400})", r"random.x: the bounds of uniform must be finite"),
        (f"loguniform(1, {10**400})", r"random.x: the bounds of loguniform must be finite"),
        (
            "int_uniform(1, 100000000000000000000000)",
            r"random.x: int_uniform bounds must be 64-bit integers, from "
            r"-9223372036854775808 to 9223372036854775807; received 'int_uniform\(1, 1",
        ),
        (f"int_uniform({-(2**63) - 1}, 0)", r"int_uniform bounds must be 64-bit integers"),
    ],
)
def test_distribution_bounds(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_distribution("x", text)


def test_distribution_bounds_at_the_limits_sample() -> None:
    big = parse_distribution("x", f"int_uniform({-(2**63)}, {2**63 - 1})")
    wide = parse_distribution("x", "loguniform(1e-300, 1e300)")
    rng = np.random.default_rng(0)
    assert isinstance(big.sample(rng), int)
    assert 1e-300 <= wide.sample(rng) <= 1e300
    assert str(parse_distribution("x", "uniform(1, 3)")) == "uniform(1, 3)"


def test_distribution_bounds_in_a_spec() -> None:
    r = {"n": 2, "params": {"learning_rate": "loguniform(1e-4, 1e400)"}}
    with pytest.raises(SpecError, match=r"random.learning_rate: the bounds of loguniform"):
        _spec(random=r)


# --- two names for one field (8) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"grid": {"hidden": [1, 2], "hidden_neurons": [3]}},
            r"grid.hidden and grid.hidden_neurons both set the field 'hidden'",
        ),
        (
            {"zip": {"hidden_neurons": [1, 2], "hidden": [3, 4]}},
            r"zip.hidden_neurons and zip.hidden both set the field 'hidden'",
        ),
        (
            {
                "random": {
                    "n": 2,
                    "params": {"hidden": "choice([1, 2])", "hidden_neurons": "choice([3])"},
                }
            },
            r"random.params.hidden and random.params.hidden_neurons both set the field",
        ),
    ],
)
def test_two_names_for_one_field(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(**kwargs)


# --- the empty search (10): one trial of the base settings ----------------------------------


def test_an_empty_grid_is_one_run_of_the_base_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for search in ({"grid": {}}, {"zip": None}, {}):
        plan = _spec(**search).plan()
        assert plan.names() == ["model_1H6N_lr0.003_bs64_e2"] and plan[0].params == {}
    seeds = _spec(grid={}, repeats=3).plan()
    assert [t.spec.train.seed for t in seeds] == [0, 1, 2]
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(_spec_dict(grid={})))
    assert main(["sweep", "plan", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert "sweep t: 1 trial (no search: the base settings)" in " ".join(out.split())
    assert "model_1H6N_lr0.003_bs64_e2" in out


# --- the CLI: exit code 2, no traceback ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: [1]\n", "base must be a mapping with model and train sections"),
        ("data: [1]\n", "data must be a mapping of data fields"),
        ("data:\n", "received data=None"),
        ("executor: 5\n", "received executor=5"),
        ("executor:\n", "received executor=None"),
        ("executor: {kind: slurm, options: [1, 2]}\n", "received options=[1, 2]"),
        ("executor: {kind: slurm, options: abc}\n", "received options='abc'"),
        (
            "executor: {kind: local, worker: 4}\n",
            "unknown executor field(s) 'worker' (did you mean workers?)",
        ),
        ("grid: {hidden: [1, 2], hidden_neurons: [3]}\n", "both set the field 'hidden'"),
        (
            "random: {n: 2, params: {learning_rate: 'loguniform(1e-4, 1e400)'}}\n",
            "random.learning_rate: the bounds of loguniform must be finite",
        ),
    ],
)
@pytest.mark.parametrize("command", ["plan", "run"])
def test_cli_refuses_bad_specs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, text: str, message: str
) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("name: t\n" + text)
    argv = ["sweep", command, str(spec_file)]
    if command == "run":
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and str(spec_file) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --- a damaged manifest (7) -----------------------------------------------------------------


def _trial0(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "manifest.json").read_text())["trials"][0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m, t: [], r"it must hold a JSON object; received list"),
        (lambda m, t: {"format_version": 1}, r"'trials' must be a list of trials; received "),
        (lambda m, t: {**m, "trials": "x"}, r"'trials' must be a list of trials"),
        (lambda m, t: {**m, "n_trials": 5}, r"n_trials is 5 but 'trials' lists 2 trial\(s\)"),
        (lambda m, t: {**m, "varied": 3}, r"'varied' must be a list of names"),
        (
            lambda m, t: {**m, "trials": [1, m["trials"][1]]},
            r"trial 0 must be a JSON object; received 1",
        ),
        (
            lambda m, t: {
                **m,
                "trials": [{k: v for k, v in t.items() if k != "name"}, m["trials"][1]],
            },
            r"trial 0 lacks the field\(s\) name",
        ),
        (
            lambda m, t: {**m, "trials": [{**t, "index": 3}, m["trials"][1]]},
            r"trial 0 has index 3; expected 0",
        ),
        (
            lambda m, t: {**m, "trials": [{**t, "name": "../../etc"}, m["trials"][1]]},
            r"trial 0: trial name must use only letters",
        ),
        (
            lambda m, t: {**m, "trials": [t, {**t, "index": 1}]},
            r"trial 1 repeats the run directory name",
        ),
        (
            lambda m, t: {**m, "trials": [{**t, "params": [1]}, m["trials"][1]]},
            r"trial 0: 'params' and 'spec' must be JSON objects",
        ),
        (
            lambda m, t: {
                **m,
                "trials": [{**t, "spec": {"train": {"epochs": -1}}}, m["trials"][1]],
            },
            r"trial 0 holds a spec this appsleuth refuses \(epochs must be a positive integer",
        ),
    ],
)
def test_a_damaged_manifest(tmp_path: Path, damage: Any, message: str) -> None:
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 4]}), tmp_path)
    path = sweep_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(damage(manifest, manifest["trials"][0])))
    for read in (read_plan, trial_states, collect_results):
        with pytest.raises(DataError, match=message) as caught:
            read(sweep_dir)
        text = str(caught.value)
        assert text.startswith(f"{path} is damaged: ")
        assert "appsleuth sweep run" in text and "sweep plan" in text
    with pytest.raises(DataError, match=message):  # resuming with the spec
        prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 4]}), tmp_path)


def test_a_damaged_manifest_in_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 4]}), tmp_path)
    (sweep_dir / "manifest.json").write_text("[]")
    for argv in (["status"], ["status", "--json"], ["collect"], ["cancel"]):
        assert main(["sweep", argv[0], str(sweep_dir), *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert "manifest.json is damaged: it must hold a JSON object" in err
    (sweep_dir / "manifest.json").write_text("{not json")
    assert main(["sweep", "status", str(sweep_dir)]) == 2
    assert "manifest.json is damaged: it is not valid JSON" in capsys.readouterr().err


def test_moving_a_damaged_manifest_away_plans_again(tmp_path: Path) -> None:
    spec = _spec(grid={"hidden_neurons": [2, 4]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    (sweep_dir / "manifest.json").write_text('{"format_version": 1}')
    (sweep_dir / "manifest.json").rename(tmp_path / "old-manifest.json")
    assert prepare_sweep_dir(spec, tmp_path) == sweep_dir
    assert read_plan(sweep_dir).names() == spec.plan().names()


# --- a missing data file (9) ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_missing_data_file_is_refused_before_anything_is_written(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "data.csv"
    if kind == "directory":
        path.mkdir()
    spec = _spec(data={"path": str(path)}, grid={"hidden_neurons": [2, 4]})
    what = "does not exist" if kind == "missing" else "is a directory"
    message = (
        rf"data.path must name an existing data file \(CSV or Parquet\); received "
        rf"path='{path}', which {what}"
    )
    with pytest.raises(DataError, match=message):
        prepare_sweep_dir(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match=message):
        check_data_files(spec.plan())


def test_a_relative_data_path_names_the_directory_it_is_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = _spec(data={"path": "nowhere.csv"})
    with pytest.raises(DataError, match=r"path='nowhere.csv', which does not exist \(from "):
        prepare_sweep_dir(spec, tmp_path / "out")


def test_a_local_run_checks_the_data_file_before_any_worker_starts(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    spec = _spec(data={"path": str(path)}, grid={"hidden_neurons": [2, 4]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path, check_data=False)
    with pytest.raises(DataError, match=rf"received path='{path}', which does not exist"):
        run_local(sweep_dir, workers=1, progress=False)
    assert [s.status for s in trial_states(sweep_dir)] == ["pending", "pending"]


def test_cli_run_with_a_missing_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nope.csv"
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        yaml.safe_dump(_spec_dict(data={"path": str(path)}, grid={"hidden_neurons": [2, 4]}))
    )
    out = tmp_path / "out"
    assert main(["sweep", "run", str(spec_file), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"received path='{path}', which does not exist" in err and "Traceback" not in err
    assert not out.exists()


# --- names the data lacks (11): every trial would fail alike ----------------------------------

_LACKING = [
    (
        {"apps": ["Gmail", "Chrom"]},
        r"app\(s\) \['Chrom'\] are not in the label column 'ApplicationName'; apps found: "
        r"\[.*'Chrome'",
    ),
    (
        {"features": ["CPU_USAGE", "nonexistent"]},
        r"lacks the feature column\(s\) \['nonexistent'\]; columns found: \[.*'CPU_USAGE'",
    ),
    (
        {"positive": "Moriarti"},
        r"app 'Moriarti' is not in the label column 'ApplicationName'; apps found: "
        r"\[.*'Moriarty'",
    ),
]


@pytest.mark.parametrize(("data", "message"), _LACKING)
def test_names_the_embedded_data_lacks_are_refused_when_planned(
    tmp_path: Path, data: dict, message: str
) -> None:
    # Planned and queued without complaint, then every trial failed with this error.
    spec = _spec(data={**SMALL, **data}, grid={"hidden_neurons": [2, 4]})
    with pytest.raises(DataError, match=message):
        prepare_sweep_dir(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        *_LACKING,
        ({"label": "Appname"}, r"has no label column 'Appname'; columns found: \['Applic"),
    ],
)
def test_names_a_data_file_lacks_are_refused_when_planned(
    tmp_path: Path, sherlock18_csv: Path, data: dict, message: str
) -> None:
    spec = _spec(data={"path": str(sherlock18_csv), **data}, grid={"hidden_neurons": [2, 4]})
    with pytest.raises(DataError, match=message):
        prepare_sweep_dir(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # The trials would have said the same, word for word.
    with pytest.raises(DataError) as trial_error:
        prepare_run_data(spec.plan()[0].spec, load_data(spec.plan()[0].spec))
    with pytest.raises(DataError) as plan_error:
        prepare_sweep_dir(spec, tmp_path / "out")
    assert str(plan_error.value) == str(trial_error.value)


def test_names_the_data_has_are_planned(tmp_path: Path, sherlock18_csv: Path) -> None:
    data = {"apps": ["Gmail", "Moriarty"], "positive": "Moriarty", "features": ["CPU_USAGE"]}
    assert (
        prepare_sweep_dir(_spec(data={**SMALL, **data}), tmp_path / "a") / "manifest.json"
    ).exists()
    spec = _spec(data={"path": str(sherlock18_csv), **data})
    assert (prepare_sweep_dir(spec, tmp_path / "b") / "manifest.json").exists()


def test_a_named_app_is_checked_when_the_data_file_is_not_here(tmp_path: Path) -> None:
    # check_data=False: the file is where the trials run; the embedded data is always here.
    spec = _spec(data={"path": str(tmp_path / "there.csv"), "apps": ["Gmail", "Chrom"]})
    assert prepare_sweep_dir(spec, tmp_path / "a", check_data=False).is_dir()
    spec = _spec(data={**SMALL, "apps": ["Gmail", "Chrom"]})
    with pytest.raises(DataError, match=r"\['Chrom'\] are not in the label column"):
        prepare_sweep_dir(spec, tmp_path / "b", check_data=False)


@pytest.mark.parametrize("command", ["plan", "run"])
def test_cli_refuses_a_typo_in_apps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sherlock18_csv: Path, command: str
) -> None:
    spec_file = tmp_path / "s.yaml"
    data = {"path": str(sherlock18_csv), "apps": ["Gmail", "Chrom"]}
    spec_file.write_text(yaml.safe_dump(_spec_dict(data=data)))
    out = tmp_path / "out"
    argv = ["sweep", command, str(spec_file)] + (["--out", str(out)] if command == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "app(s) ['Chrom'] are not in the label column" in err and "Traceback" not in err
    assert not out.exists()


def test_the_embedded_stand_in_has_the_embedded_data_s_names() -> None:
    # The plan-time check reads the stand-in; were it to drift, it would refuse (or pass)
    # names the trials' data has (or lacks).
    real = embedded_data(50, seed=3)
    stand_in = embedded_stand_in(seed=3)
    assert list(stand_in.columns) == list(real.columns)
    assert sorted(stand_in["ApplicationName"]) == sorted(real["ApplicationName"].unique())
    assert frame_info(stand_in) == frame_info(real)


def test_a_trial_that_fails_before_its_run_directory_is_recorded_as_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As on a SLURM node: the file was there when the sweep was planned, and is not now.
    path = tmp_path / "gone.csv"
    spec = _spec(data={"path": str(path)}, grid={"hidden_neurons": [2, 4]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path, check_data=False)
    stale = sweep_dir / spec.plan()[1].name
    stale.mkdir()  # an interrupted earlier attempt: replaced by the failure record
    (stale / ".appsleuth-run").write_text("")
    (stale / "model_history.csv").write_text("loss\n1.0\n")
    for index in (0, 1):
        outcome = run_trial(sweep_dir, index)
        assert outcome.status == "failed"
        assert outcome.error.startswith("DataError: ") and str(path) in outcome.error
    assert not (stale / "model_history.csv").exists()
    states = trial_states(sweep_dir)
    assert [s.status for s in states] == ["failed", "failed"]
    assert all(str(path) in s.error for s in states)
    assert states[0].metadata["hidden_neurons"] == [2] and states[0].duration_s is not None
    _, full = collect_results(sweep_dir)
    rich = pd.read_csv(full)
    assert rich["status"].tolist() == ["failed", "failed"]
    assert all(str(path) in e for e in rich["error"])
    assert rich["hidden_neurons"].tolist() == ["[2]", "[4]"]
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(str(path) in r["error"] for r in rows)
    # Not retried by default; --retry-failed tries again (and records the failure again).
    assert run_trial(sweep_dir, 0).status == "failed-before"
    assert run_trial(sweep_dir, 0, retry_failed=True).status == "failed"


def test_executor_device_is_validated_and_kept() -> None:
    spec = SweepSpec.from_dict({**_spec_dict(), "executor": {"kind": "local", "device": "cpu"}})
    assert spec.executor.device == "cpu"
    assert SweepSpec.from_dict(spec.to_dict()).executor.device == "cpu"
    with pytest.raises(SpecError, match=r"device must be 'auto', 'cpu' or 'gpu'; received "
                       r"device='tpu'"):  # fmt: skip
        SweepSpec.from_dict({**_spec_dict(), "executor": {"device": "tpu"}})


def test_local_sweep_on_a_gpu_that_is_not_there_fails_before_any_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # no GPU, whatever this machine has
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    with pytest.raises(SpecError, match=r"device 'gpu' requested but JAX sees no CUDA GPU"):
        run_local(sweep_dir, device="gpu", progress=False)
    assert [p.name for p in sweep_dir.iterdir() if p.name.startswith("model_")] == []
    with pytest.raises(SpecError, match=r"device must be 'auto', 'cpu' or 'gpu'"):
        run_local(sweep_dir, device="npu", progress=False)


def test_run_trial_takes_numpy_integers_and_names_a_float_index(tmp_path: Path) -> None:
    # A data file that is not there fails the trial at once, without training.
    spec = _spec(data={"path": str(tmp_path / "gone.csv")}, grid={"hidden_neurons": [2, 4]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path, check_data=False)
    outcome = run_trial(sweep_dir, np.arange(2)[1])  # was refused: "received index=1"
    assert (outcome.index, outcome.status) == (1, "failed") and "gone.csv" in outcome.error
    with pytest.raises(AppSleuthError, match=r"received index=1.0 \(a float, not an integer\)"):
        run_trial(sweep_dir, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threads_per_trial": 0}, r"threads_per_trial must be a positive integer; received "
                                   r"threads_per_trial=0"),  # was a ZeroDivisionError
        ({"threads_per_trial": 1.5}, r"received threads_per_trial=1.5"),
        ({"workers": 0}, r"workers must be a positive integer; received workers=0"),  # was 1
        ({"workers": "2"}, r"received workers='2'"),  # was a TypeError
        ({"workers": True}, r"received workers=True"),
    ],
)  # fmt: skip
def test_local_sweep_workers_and_threads_are_validated(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path)
    with pytest.raises(SpecError, match=message):
        run_local(sweep_dir, progress=False, **kwargs)
    assert [p.name for p in sweep_dir.iterdir() if p.name.startswith("model_")] == []


def test_local_sweep_with_device_cpu_runs_its_trials_on_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(_spec_dict(grid={})))
    argv = ["sweep", "run", str(spec_file), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 0
    (state,) = trial_states(tmp_path / "out" / "t")
    assert state.status == "complete"
    meta = json.loads((tmp_path / "out" / "t" / state.name / "model_metadata.json").read_text())
    assert meta["hardware"]["device"] == "cpu"
    assert main([*argv[:-1], "tpu"]) == 2
    assert "Invalid value for '--device'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("search", "size"),
    [
        ({"grid": {"learning_rate": [0.1] * 2000, "batch_size": list(range(1, 2001))}}, 4_000_000),
        ({"random": {"n": 10**9, "params": {"learning_rate": "loguniform(1e-4, 1e-1)"}}}, 10**9),
        ({"grid": {}, "repeats": 10**9}, 10**9),
    ],
)
def test_a_huge_plan_is_refused_at_once(search: dict[str, Any], size: int) -> None:
    with pytest.raises(SpecError, match=rf"would plan {size:,} trials, more than the 100,000"):
        SweepSpec.from_dict(_spec_dict(**search))


def test_sweep_spec_takes_numpy_values_and_keeps_its_own_lists(tmp_path: Path) -> None:
    grid = {"learning_rate": list(np.logspace(-3, -2, 2))}
    spec = SweepSpec(name="np", grid=grid)
    grid["learning_rate"].append(0.5)
    spec.to_dict()["grid"]["learning_rate"].append(0.7)
    assert spec.size() == 2
    assert all(type(v) is float for v in spec.grid["learning_rate"])
    assert (prepare_sweep_dir(spec, tmp_path) / "sweep.yaml").exists()


def test_sweep_base_with_data_is_refused() -> None:
    from appsleuth.spec import DataSpec, RunSpec

    with pytest.raises(SpecError, match=r"base must hold model and train only.*base.data="):
        SweepSpec(name="t", base=RunSpec(data=DataSpec(positive="Moriarty")))


def test_sweep_specs_are_hashable() -> None:
    a = SweepSpec(name="x", grid={"learning_rate": [0.1, 0.01]})
    assert hash(a) == hash(SweepSpec(name="x", grid={"learning_rate": [0.1, 0.01]}))
    assert len({a, SweepSpec(name="x", grid={"learning_rate": [0.1]})}) == 2


def test_a_relative_data_path_is_the_file_it_named_when_planned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth.data.tables import write_table

    first, other = tmp_path / "first", tmp_path / "first" / "other"
    other.mkdir(parents=True)
    table = pd.DataFrame({"ApplicationName": ["a", "b"] * 30, "x": range(60)})
    for where in (first, other):
        write_table(table, where / "small.csv")
    monkeypatch.chdir(first)
    spec = _spec(data={"path": "small.csv"})
    sweep_dir = prepare_sweep_dir(spec, tmp_path / "out")
    assert read_plan(sweep_dir)[0].spec.data.path == "small.csv"  # kept as written
    assert prepare_sweep_dir(spec, tmp_path / "out") == sweep_dir  # resumed from here: fine
    monkeypatch.chdir(other)
    with pytest.raises(SpecError, match=r"was planned on the data file .*first/small.csv; from"):
        prepare_sweep_dir(spec, tmp_path / "out")
    (first / "small.csv").rename(first / "moved.csv")  # the project moved: the path is all
    assert prepare_sweep_dir(spec, tmp_path / "out") == sweep_dir  # there is to go by


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: {**t, "params": {"hidden_neurons": 77}},
            r"trial 0: params say hidden_neurons=77 but its spec has model\.hidden=\[2\]",
        ),
        (
            lambda t: {**t, "name": "model_1H9N_lr0.003_bs64_e2"},
            r"trial 0: name 'model_1H9N_lr0.003_bs64_e2' is not its spec's run name",
        ),
    ],
)
def test_a_manifest_whose_names_or_params_disagree_with_the_specs(
    tmp_path: Path, edit: Any, message: str
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 4]}), tmp_path)
    path = sweep_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["trials"][0] = edit(manifest["trials"][0])
    path.write_text(json.dumps(manifest))
    for read in (read_plan, trial_states, collect_results):
        with pytest.raises(DataError, match=message):
            read(sweep_dir)


def test_a_varied_mapping_the_spec_completes_matches_its_trials(tmp_path: Path) -> None:
    # The spec fills in early stopping's defaults; the manifest keeps the value as written.
    spec = _spec(grid={"early_stopping": [None, {"patience": 2}]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    plan = read_plan(sweep_dir)
    assert plan[1].params == {"early_stopping": {"patience": 2}}
    assert plan[1].spec.train.early_stopping.patience == 2
    assert [s.status for s in trial_states(sweep_dir)] == ["pending", "pending"]
    path = sweep_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["trials"][1]["params"] = {"early_stopping": {"patience": 3}}  # edited: damaged
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"trial 1: params say early_stopping=\{'patience': 3\}"):
        read_plan(sweep_dir)


def test_sweep_dir_needs_a_sweep_spec(tmp_path) -> None:
    from appsleuth.sweep.store import prepare_sweep_dir

    with pytest.raises(SpecError, match=r"spec must be a SweepSpec \(SweepSpec.from_dict"):
        prepare_sweep_dir({"name": "x"}, tmp_path)


def test_executor_specs_hash_like_the_other_specs() -> None:
    from appsleuth.sweep.space import ExecutorSpec

    a = ExecutorSpec.from_dict({"kind": "slurm", "partition": "gpu"})
    b = ExecutorSpec.from_dict({"kind": "slurm", "partition": "gpu"})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
