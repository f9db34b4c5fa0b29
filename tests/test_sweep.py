"""Sweeps: spec validation, deterministic plans, the sweep directory, the local executor,
and recovery from kill -9."""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from appsleuth.cli import main
from appsleuth.errors import AppSleuthError, DataError, SpecError
from appsleuth.run import load_run, read_metadata, run_status, validate_name
from appsleuth.sweep import (
    SweepInterrupted,
    SweepSpec,
    collect_results,
    load_sweep_spec,
    prepare_sweep_dir,
    read_plan,
    run_local,
    run_trial,
    trial_states,
)
from appsleuth.sweep.local import plan_workers
from appsleuth.sweep.space import parse_distribution

REPO = Path(__file__).resolve().parents[1]
SMALL = {"rows": 2000, "synth_seed": 4}
BASE = {"model": {"hidden": [6]}, "train": {"epochs": 2, "batch_size": 64, "learning_rate": 0.003}}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _spec(**kwargs) -> SweepSpec:
    d = {"name": "t", "data": SMALL, "base": BASE, **kwargs}
    return SweepSpec.from_dict(d)


# --- specs and plans ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        (  # Only what the teaching name shows varies: the names are the teaching ones.
            {"grid": {"hidden_neurons": [2], "learning_rate": [0.1]}},
            ["model_1H2N_lr0.1_bs64_e2"],
        ),
        (
            {"grid": {"dropout": [0.0, 0.25], "learning_rate": [0.1]}},
            ["model_1H6N_lr0.1_bs64_e2_dropout0", "model_1H6N_lr0.1_bs64_e2_dropout0.25"],
        ),
        (  # Each varied setting, in the spec's order, before the seed of repeats.
            {"grid": {"activation": ["relu", "tanh"], "batch_norm": [True]}, "repeats": 2},
            [
                "model_1H6N_lr0.003_bs64_e2_activationrelu_batch_normtrue_seed0",
                "model_1H6N_lr0.003_bs64_e2_activationrelu_batch_normtrue_seed1",
                "model_1H6N_lr0.003_bs64_e2_activationtanh_batch_normtrue_seed0",
                "model_1H6N_lr0.003_bs64_e2_activationtanh_batch_normtrue_seed1",
            ],
        ),
        (
            {"zip": {"hidden": [[6, 4], [6, 4]], "dropout": [[0.1, 0.2], 0.3]}},
            [
                "model_2H6N4N_lr0.003_bs64_e2_dropout0.1-0.2",
                "model_2H6N4N_lr0.003_bs64_e2_dropout0.3",
            ],
        ),
        (
            {"zip": {"optimizer": ["adam", "adamw"], "weight_decay": [None, 0.0001]}},
            [
                "model_1H6N_lr0.003_bs64_e2_optimizeradam_weight_decaynone",
                "model_1H6N_lr0.003_bs64_e2_optimizeradamw_weight_decay0.0001",
            ],
        ),
        (  # Values with an underscore: shown as any other (leaky_relu was left out).
            {"grid": {"activation": ["relu", "leaky_relu"]}},
            [
                "model_1H6N_lr0.003_bs64_e2_activationrelu",
                "model_1H6N_lr0.003_bs64_e2_activationleaky_relu",
            ],
        ),
        (  # ... and varying only such values was refused as unnameable.
            {"grid": {"kernel_initializer": ["glorot_uniform", "he_normal"]}},
            [
                "model_1H6N_lr0.003_bs64_e2_kernel_initializerglorot_uniform",
                "model_1H6N_lr0.003_bs64_e2_kernel_initializerhe_normal",
            ],
        ),
    ],
)
def test_run_names_show_the_varied_settings(kwargs: dict, names: list[str]) -> None:
    # Settings the teaching name leaves out get directories of their own when varied.
    plan = _spec(**kwargs).plan()
    assert plan.names() == names
    for trial in plan:
        validate_name(trial.name)


def test_a_manifest_checks_the_names_that_show_varied_settings(tmp_path: Path) -> None:
    sweep_dir = prepare_sweep_dir(_spec(grid={"dropout": [0.0, 0.25]}), tmp_path)
    names = ["model_1H6N_lr0.003_bs64_e2_dropout0", "model_1H6N_lr0.003_bs64_e2_dropout0.25"]
    assert read_plan(sweep_dir).names() == names
    path = sweep_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["trials"][1]["name"] = "model_1H6N_lr0.003_bs64_e2_dropout0.5"  # edited
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"trial 1: name '.*_dropout0.5' is not its spec's"):
        read_plan(sweep_dir)


def test_a_value_a_run_name_cannot_hold_is_left_out_of_it(tmp_path: Path) -> None:
    # '+' was written into the name, and the manifest just written read as damaged.
    spec = _spec(grid={"kernel_initializer": ["he+normal", "zeros"]})
    assert spec.plan().names() == [
        "model_1H6N_lr0.003_bs64_e2",
        "model_1H6N_lr0.003_bs64_e2_kernel_initializerzeros",
    ]
    assert read_plan(prepare_sweep_dir(spec, tmp_path)).names() == spec.plan().names()


def test_a_run_name_too_long_for_a_directory_is_refused_when_planned() -> None:
    long = "x" * 250
    with pytest.raises(
        SpecError,
        match=rf"^trial 1 \({{'kernel_initializer': '{long}'}}\): run directory name is \d+ "
        r"characters long, more than the 245 appsleuth allows \(a directory name may have 255",
    ):
        _spec(grid={"kernel_initializer": ["zeros", long]})


def test_a_sweep_dir_named_by_an_earlier_appsleuth_is_reused(tmp_path: Path) -> None:
    # Its names left leaky_relu out (model_..._e2); planned again, the sweep keeps them.
    spec = _spec(grid={"activation": ["relu", "leaky_relu"]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    path = sweep_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["trials"][1]["name"] = "model_1H6N_lr0.003_bs64_e2"
    path.write_text(json.dumps(manifest))
    assert prepare_sweep_dir(spec, tmp_path) == sweep_dir
    assert read_plan(sweep_dir).names()[1] == "model_1H6N_lr0.003_bs64_e2"
    assert json.loads(path.read_text()) == manifest


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": {**BASE, "model": {**BASE["model"], "dropout": 0.2}}},  # set, not varied
        {"zip": {"learning_rate": [0.1, 0.2], "activation": ["relu", "tanh"]}},
    ],
    ids=["held-in-base", "names-already-apart"],
)
def test_teaching_names_are_kept_when_they_tell_the_trials_apart(kwargs: dict) -> None:
    # As sweeps planned before varied settings were shown: their directories still match.
    if "zip" not in kwargs:
        kwargs["grid"] = {"learning_rate": [0.1]}
    plan = _spec(**kwargs).plan()
    assert plan.names() == [f"model_1H6N_lr{t.spec.train.learning_rate:g}_bs64_e2" for t in plan]


def test_grid_plan_order_len_and_indexing() -> None:
    spec = _spec(grid={"hidden_neurons": [2, 4], "learning_rate": [0.1, 0.01]})
    plan = spec.plan()
    assert len(plan) == 4
    assert plan.names() == [
        "model_1H2N_lr0.1_bs64_e2",
        "model_1H2N_lr0.01_bs64_e2",
        "model_1H4N_lr0.1_bs64_e2",
        "model_1H4N_lr0.01_bs64_e2",
    ]
    assert plan[2].params == {"hidden_neurons": 4, "learning_rate": 0.1}
    assert plan[2].spec.model.hidden == (4,) and plan[2].spec.train.learning_rate == 0.1
    assert plan[3].index == 3
    assert spec.plan().names() == plan.names()  # same on every call (and machine)


def test_zip_repeats_and_seed_suffix() -> None:
    spec = _spec(zip={"learning_rate": [0.1, 0.01], "batch_size": [16, 32]}, repeats=2)
    plan = spec.plan()
    assert plan.names() == [
        "model_1H6N_lr0.1_bs16_e2_seed0",
        "model_1H6N_lr0.1_bs16_e2_seed1",
        "model_1H6N_lr0.01_bs32_e2_seed0",
        "model_1H6N_lr0.01_bs32_e2_seed1",
    ]
    assert [t.spec.train.seed for t in plan] == [0, 1, 0, 1]


def test_random_plan_is_seeded() -> None:
    r = {
        "n": 5,
        "seed": 3,
        "params": {
            "learning_rate": "loguniform(1e-4, 1e-1)",
            "hidden_neurons": "choice([4, 8, [8, 8]])",
            "batch_size": "int_uniform(16, 128)",
        },
    }
    a, b = _spec(random=r).plan(), _spec(random=r).plan()
    assert a.names() == b.names() and len(a) == 5
    for t in a:
        assert 1e-4 <= t.spec.train.learning_rate <= 1e-1
        assert 16 <= t.spec.train.batch_size <= 128
    c = _spec(random={**r, "seed": 4}).plan()
    assert c.names() != a.names()


def test_random_search_draws_distinct_points() -> None:
    # Discrete distributions repeat a point sooner or later: redrawn, not refused.
    r = {
        "n": 6,
        "seed": 0,
        "params": {"batch_size": "choice([16, 32, 64])", "hidden_neurons": "int_uniform(4, 5)"},
    }
    plan = _spec(random=r).plan()
    assert len(plan) == 6 and len(set(plan.names())) == 6
    assert {(t.spec.train.batch_size, t.spec.model.hidden) for t in plan} == {
        (b, (h,)) for b in (16, 32, 64) for h in (4, 5)
    }
    assert _spec(random=r).plan().names() == plan.names()  # still seeded
    assert _spec(random={**r, "seed": 1}).plan().names() != plan.names()


def test_random_search_plans_without_repeated_draws_are_unchanged() -> None:
    # The redraw only replaces what used to be refused: the seeded draws stay the same.
    r = {"n": 3, "seed": 3, "params": {"learning_rate": "loguniform(1e-4, 1e-1)"}}
    rng = np.random.default_rng(3)
    expected = [float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-1)))) for _ in range(3)]
    assert [t.params["learning_rate"] for t in _spec(random=r).plan()] == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "../escape"}, r"sweep name must use only letters, digits"),
        ({"name": "a/b"}, r"sweep name must use only letters"),
        ({"grid": {"neurons": [1]}}, r"sweep parameter 'neurons' is not a model or training field"),
        (
            {"grid": {"hidden_nerons": [1]}},
            r"sweep parameter 'hidden_nerons' is not a model or training field \(did you mean "
            r"hidden_neurons\?\); valid names: ",
        ),
        ({"grid": {"learning_rate": 0.1}}, r"grid.learning_rate must be a non-empty list"),
        (
            {"zip": {"learning_rate": [0.1, 0.2], "batch_size": [8]}},
            r"zip lists must have one "
            r"length",
        ),
        ({"grid": {"epochs": [1]}, "zip": {"batch_size": [8]}}, r"a sweep has one search"),
        ({"repeats": 0}, r"repeats must be a positive integer; received repeats=0"),
        ({"grid": {"learning_rate": [0.1, -1]}}, r"trial 1 .*learning_rate must be a positive"),
        (
            {"random": {"n": 2, "params": {"learning_rate": "normal(0, 1)"}}},
            r"random.learning_rate must be loguniform",
        ),
        (
            {"random": {"n": 0, "params": {"learning_rate": "uniform(0.1, 0.2)"}}},
            r"random.n must be a positive integer",
        ),
        ({"executor": {"kind": "kubernetes"}}, r"executor kind must be local or slurm"),
        ({"colour": "red"}, r"unknown sweep field\(s\) colour"),
        # Plans that would repeat a run directory say why.
        (
            {"random": {"n": 5, "params": {"batch_size": "choice([16, 32, 16])"}}},
            r"random.n is 5, but its distributions hold only 2 distinct point\(s\) "
            r"\(batch_size: 2\); lower n to 2 or less",
        ),
        (
            {"random": {"n": 7, "params": {"epochs": "int_uniform(1, 2)", "batch_size": [8, 9]}}},
            r"only 4 distinct point\(s\) \(epochs: 2, batch_size: 2\)",
        ),
        (
            {"random": {"n": 3, "params": {"batch_size": "loguniform(16, 1024)"}}},
            r"random.batch_size: batch_size takes whole numbers, but loguniform draws "
            r"fractions; use int_uniform\(a, b\), or choice\(\[...\]\)",
        ),
        (
            {"random": {"n": 3, "params": {"hidden_neurons": "uniform(2, 64)"}}},
            r"random.hidden_neurons: hidden_neurons takes whole numbers, but uniform",
        ),
        (
            {"random": {"n": 3, "params": {"epochs": "uniform(1, 3)"}}},
            r"random.epochs: epochs takes whole numbers",
        ),
        (
            {"grid": {"learning_rate": [0.1, 0.01, 0.1]}},
            r"trials 0 and 2 are the same setting \({'learning_rate': 0.1}\) and would share "
            r"the run directory 'model_1H6N_lr0.1_bs64_e2': grid lists it twice",
        ),
        (
            {"grid": {"dropout": [0.1, 0.1000000001]}},
            r"trials 0 and 1 would share the run directory 'model_1H6N_lr0.003_bs64_e2_"
            r"dropout0.1': their settings .* differ only in what the directory name does not "
            r"show; it shows hidden, batch_size, epochs, and learning_rate and the varied "
            r"settings' numbers with 9 decimals$",
        ),
        (  # The advice of train (name the run yourself) does not apply to a trial.
            {"random": {"n": 2, "params": {"learning_rate": "loguniform(1e-12, 1e-10)"}}},
            r"^trial 0 \({'learning_rate': .*}\): learning_rate .* is below 1e-9, which a "
            r"trial's run directory name cannot show \(it writes 9 decimals\); use learning "
            r"rates of 1e-9 or more \(for loguniform: a low bound of 1e-9 or more\)$",
        ),
        (
            {"grid": {"class_weight": [{"Gmail": 2.0}, {"Gmail": 3.0}]}},
            r"trials 0 and 1 would share the run directory 'model_1H6N_lr0.003_bs64_e2': .*"
            r"\(class_weight cannot be written in a directory name: run one sweep, with its "
            r"own name, per value of class_weight, set in base\)",
        ),
    ],
)
def test_spec_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (  # The default optimizer is adam: every trial trained the same model.
            {"grid": {"momentum": [0.0, 0.9]}},
            r"^momentum is varied, but only optimizer sgd and rmsprop use it and every "
            r"trial's optimizer is adam: each trial would train the same model; set "
            r"base.train.optimizer to sgd, or vary optimizer as well$",
        ),
        (
            {
                "base": {**BASE, "train": {**BASE["train"], "optimizer": "sgd"}},
                "random": {"n": 2, "params": {"beta_1": "uniform(0.5, 0.9)"}},
            },
            r"^beta_1 is varied, but only optimizer adam and adamw use it and every "
            r"trial's optimizer is sgd",
        ),
    ],
)
def test_a_varied_setting_no_trial_uses_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grid": {"optimizer": ["adam", "sgd"], "momentum": [0.0, 0.9]}},  # used by sgd
        {"grid": {"momentum": [0.0], "learning_rate": [0.1, 0.2]}},  # one value: no repeat
    ],
)
def test_a_varied_setting_some_trial_uses_is_planned(kwargs: dict) -> None:
    assert len(_spec(**kwargs).plan()) == 4 if "optimizer" in kwargs["grid"] else 2


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (  # A run spec (a run directory's spec.yaml) given as a sweep spec.
            {"name": "t", "model": {"hidden": [4]}, "train": {"epochs": 2}},
            r"a sweep spec holds model and train under base \(base: {model: ..., train: "
            r"...}\); received top-level model and train \(a run spec with sections data, "
            r"model and train is for 'appsleuth train --config'\)",
        ),
        (  # data is no field of base: it was listed as one.
            {"name": "t", "base": {"modle": {"hidden": [4]}}},
            r"unknown base field\(s\) modle \(did you mean model\?\); valid fields: model, "
            r"train$",
        ),
    ],
)
def test_spec_section_mixups(d: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SweepSpec.from_dict(d)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loguniform(0, 1)", "positive low bound"),
        ("uniform(2, 1)", "two numbers low < high"),
        ("int_uniform(1.5, 3)", "two integers"),
        ("choice([])", "one non-empty list"),
        ("choice(__import__('os'))", "must be numbers or a list"),
        # Python's parser runs out of memory on it (MemoryError), which is no bad machine.
        ("choice([" + "-" * 100_000 + "1])", "must be numbers or a list"),
    ],
)
def test_distribution_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_distribution("x", text)


def test_teaching_studies_ship_as_specs() -> None:
    sizes = {
        "scan-hidden-neurons": 8,
        "scan-learning-rate": 4,
        "scan-batch-size": 6,
        "scan-layers": 4,
    }
    total = 0
    for name, n in sizes.items():
        spec = load_sweep_spec(REPO / "examples" / "sweeps" / f"{name}.yaml")
        plan = spec.plan()
        assert spec.name == name and len(plan) == n
        for t in plan:  # otherwise the baseline
            assert t.spec.train.epochs == 30 and t.spec.data.split.seed == 34
        total += n
    assert total == 22
    neurons = load_sweep_spec(REPO / "examples/sweeps/scan-hidden-neurons.yaml").plan()
    assert neurons[5].name == "model_1H18N_lr0.0003_bs32_e30"
    layers = load_sweep_spec(REPO / "examples/sweeps/scan-layers.yaml").plan()
    assert layers[1].name == "model_2H18N18N_lr0.0003_bs32_e30"


def test_yaml_round_trip(tmp_path: Path) -> None:
    spec = _spec(
        grid={"hidden_neurons": [2, [4, 4]]}, repeats=2, executor={"kind": "local", "workers": 1}
    )
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    again = load_sweep_spec(path)
    assert again.plan().names() == spec.plan().names()
    assert again.executor.workers == 1


def test_workers_never_oversubscribe() -> None:
    cores = len(os.sched_getaffinity(0))
    assert plan_workers(None, 1, 100) == cores
    assert plan_workers(None, 1, 1) == 1
    with pytest.raises(SpecError, match=r"workers x threads_per_trial must not exceed"):
        plan_workers(cores + 1, 1, 100)
    with pytest.raises(SpecError, match="threads_per_trial must not exceed"):
        plan_workers(None, cores + 1, 100)


@pytest.mark.parametrize(("workers", "n_trials", "expected"), [(8, 1, 1), (8, 0, 1), (None, 0, 1)])
def test_workers_beyond_the_trials_to_run_are_no_error(
    workers: int | None, n_trials: int, expected: int
) -> None:
    # Only workers that get a trial use cores: 8 workers for 1 trial (or none left, a
    # finished sweep run again) run on any machine.
    assert plan_workers(workers, 1, n_trials) == expected


# --- the sweep directory --------------------------------------------------------------------


def test_sweep_dir_manifest_and_a_changed_spec(tmp_path: Path) -> None:
    spec = _spec(grid={"hidden_neurons": [2, 4]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    assert sweep_dir == tmp_path / "t"
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert manifest["n_trials"] == 2 and manifest["trials"][1]["index"] == 1
    assert prepare_sweep_dir(spec, tmp_path) == sweep_dir  # resuming is allowed
    with pytest.raises(SpecError, match="already holds a different sweep"):
        prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 8]}), tmp_path)
    states = trial_states(sweep_dir)
    assert [s.status for s in states] == ["pending", "pending"]
    with pytest.raises(AppSleuthError, match=r"trial index must be in 0..1; received index=5"):
        run_trial(sweep_dir, 5)


def test_two_sweeps_planned_into_one_new_directory_at_once_are_not_mixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = _spec(grid={"hidden_neurons": [2, 4]}), _spec(grid={"hidden_neurons": [8]})
    real_mkdir = Path.mkdir
    outcome: dict[str, object] = {}

    def other_plans_first(self, *args, **kwargs):
        # Another 'sweep run' of another spec plans the same new directory meanwhile.
        if self == tmp_path / "t" and "theirs" not in outcome:
            outcome["theirs"] = None
            outcome["theirs"] = prepare_sweep_dir(theirs, tmp_path)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", other_plans_first)
    with pytest.raises(SpecError, match="already holds a different sweep"):
        prepare_sweep_dir(mine, tmp_path)
    assert outcome["theirs"] == tmp_path / "t"
    # The directory is theirs throughout: its trials and the spec that planned them.
    assert read_plan(tmp_path / "t").names() == theirs.plan().names()
    assert yaml.safe_load((tmp_path / "t" / "sweep.yaml").read_text())["grid"] == {
        "hidden_neurons": [8]
    }


def test_a_sweep_planned_by_a_killed_process_gets_its_spec_file_on_resuming(
    tmp_path: Path,
) -> None:
    spec = _spec(grid={"hidden_neurons": [2, 4]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    (sweep_dir / "sweep.yaml").unlink()  # killed between the manifest and the spec file
    prepare_sweep_dir(spec, tmp_path)
    assert yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) == spec.to_dict()


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        # Same run directory names: only the data differs, so the names alone tell nothing.
        (
            {"data": {**SMALL, "rows": 2001}},
            r"already holds a different sweep: trial 0 \(model_1H2N_lr0.003_bs64_e2\) has "
            r"spec.data.rows=2000 there, 2001 in this spec; use another --out",
        ),
        (
            {"base": {**BASE, "model": {"hidden": [6], "activation": "tanh"}}},
            r"trial 0 \(model_1H2N_lr0.003_bs64_e2\) has spec.model.activation='relu' there, "
            r"'tanh' in this spec",
        ),
        (
            {"grid": {"hidden_neurons": [2, 4, 8]}},
            r"already holds a different sweep: it plans 2 trial\(s\), this spec 3",
        ),
        (
            {"grid": {"hidden_neurons": [2, 8]}},
            r"trial 1 \(model_1H4N_lr0.003_bs64_e2\) has spec.model.hidden=\[4\] there, "
            r"\[8\] in this spec",
        ),
    ],
)
def test_a_changed_spec_is_refused_naming_what_changed(
    tmp_path: Path, changed: dict, message: str
) -> None:
    prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 4]}), tmp_path)
    with pytest.raises(SpecError, match=message):
        prepare_sweep_dir(_spec(**{"grid": {"hidden_neurons": [2, 4]}, **changed}), tmp_path)


def test_local_executor_failures_status_collect_and_retry(tmp_path: Path) -> None:
    # Trial 1 names an app that is not a class: it fails; the others go on.
    spec = _spec(
        zip={
            "learning_rate": [0.003, 0.004, 0.005],
            "class_weight": ["none", {"Tetris": 2.0}, "balanced"],
        }
    )
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    seen = []
    summary = run_local(sweep_dir, workers=1, progress=False, on_outcome=seen.append)
    assert summary.count("complete") == 2 and summary.failed == 1
    assert sorted(o.index for o in seen) == [0, 1, 2]
    states = trial_states(sweep_dir)
    assert [s.status for s in states] == ["complete", "failed", "complete"]
    assert "Tetris" in states[1].error
    results, full = collect_results(sweep_dir)
    teaching = pd.read_csv(results)
    assert list(teaching.columns) == [
        "learning_rate",
        "class_weight",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert len(teaching) == 2
    assert teaching["learning_rate"].tolist() == [0.003, 0.005]
    rich = pd.read_csv(full)
    assert rich["status"].tolist() == ["complete", "failed", "complete"]
    assert "Tetris" in rich.loc[1, "error"]
    assert {"f1_macro", "moriarty_detection_rate", "wall_time_s", "seed"} <= set(rich)
    for i in (0, 2):  # The epoch the row's numbers come from, and the lowest-loss one.
        history = pd.read_csv(sweep_dir / rich.loc[i, "name"] / "model_history.csv")
        assert rich.loc[i, "results_epoch"] == rich.loc[i, "epochs_run"] == len(history)
        kept = history.iloc[int(rich.loc[i, "results_epoch"]) - 1]
        assert rich.loc[i, "val_loss"] == pytest.approx(kept["val_loss"])
        assert rich.loc[i, "min_val_loss_epoch"] == history["val_loss"].idxmin() + 1
    # Re-running skips everything; --retry-failed redoes the failed trial only.
    again = run_local(sweep_dir, workers=1, progress=False)
    assert again.count("skipped") == 2 and again.count("failed-before") == 1
    assert again.workers == 0  # nothing left to train: no worker started
    retried = run_local(sweep_dir, workers=1, progress=False, retry_failed=True)
    assert retried.count("failed") == 1 and retried.count("skipped") == 2


def test_sweep_plan_shows_whole_run_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    grid = {"activation": ["relu", "tanh"], "dropout": [0.1], "batch_norm": [True]}
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "p", "base": BASE, "grid": grid}, sort_keys=False))
    assert main(["sweep", "plan", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert "…" not in out  # folded onto more lines, not cut short
    cells = [line.split("│")[2].strip() for line in out.splitlines() if line.count("│") > 2]
    assert "".join(cells) == "".join(_spec(grid=grid).plan().names())


def test_cli_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {"name": "cli-scan", "data": SMALL, "base": BASE, "grid": {"hidden_neurons": [3, 5]}}
        )
    )
    assert main(["sweep", "plan", str(spec_file)]) == 0
    assert "model_1H5N_lr0.003_bs64_e2" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["sweep", "run", str(spec_file), "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "2 trained, 0 already complete, 0 failed" in text
    assert "with 1 worker(s) x 1 thread(s)" in text
    # Again, with nothing left to train: no workers started, none claimed.
    assert main(["sweep", "run", str(spec_file), "--out", str(out), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "0 trained, 2 already complete, 0 failed" in text and "worker(s)" not in text
    sweep_dir = out / "cli-scan"
    assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
    states = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in states] == ["complete", "complete"]
    assert main(["sweep", "collect", str(sweep_dir)]) == 0
    teaching = pd.read_csv(sweep_dir / "results.csv")
    assert teaching.columns[0] == "hidden_neurons"
    assert teaching["hidden_neurons"].tolist() == [3, 5]
    assert main(["sweep", "worker", str(sweep_dir), "--index", "0"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["sweep", "status", str(tmp_path)]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err


def test_a_directory_of_other_files_is_not_made_a_sweep(tmp_path: Path) -> None:
    # e.g. the teaching material's runs of a study: collect would overwrite results.csv.
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "results.csv").write_text("hidden_neurons,val_accuracy\n18,0.9\n")
    with pytest.raises(SpecError, match=r"t exists and holds files of no appsleuth sweep.*"):
        prepare_sweep_dir(_spec(), tmp_path)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["results.csv"]
    (tmp_path / "t" / "results.csv").unlink()  # an empty one is taken
    assert (prepare_sweep_dir(_spec(), tmp_path) / "manifest.json").is_file()
    (tmp_path / "t" / "manifest.json").unlink()  # the recovery from a damaged manifest
    (tmp_path / "t" / "results.csv").write_text("")
    assert (prepare_sweep_dir(_spec(), tmp_path) / "manifest.json").is_file()


def test_a_manifest_nested_past_pythons_limit_is_damaged(tmp_path: Path) -> None:
    # Nested past Python's limit: json.loads raises RecursionError, no ValueError
    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"manifest.json is damaged: it is not valid JSON"):
        read_plan(tmp_path)


def test_a_manifest_linked_to_a_device_is_refused_not_read_for_ever(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was read until memory ran out ('out of memory: MemoryError; use smaller sizes').
    (tmp_path / "manifest.json").symlink_to("/dev/zero")
    message = r"manifest.json cannot be read: it is a character device \(such as /dev/zero\)"
    with pytest.raises(DataError, match=message):
        read_plan(tmp_path)
    assert main(["sweep", "status", str(tmp_path)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    with pytest.raises(SpecError, match=r"manifest.json cannot be read: it is a character device"):
        load_sweep_spec(tmp_path / "manifest.json")


def test_sweep_status_shows_a_path_with_square_brackets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "a[/]b" in the path is a closing tag to rich: the title stopped with a MarkupError.
    sweep_dir = prepare_sweep_dir(_spec(), tmp_path / "a[" / "]b")
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    assert str(sweep_dir) in "".join(capsys.readouterr().out.split())  # however it wraps


def _states_now(sweep_dir: Path) -> list:
    """The sweep's trial states, none while it is not planned yet."""
    if not (sweep_dir / "manifest.json").is_file():
        return []
    return trial_states(sweep_dir, compare_spec=False)


def _wait_for(
    condition, proc: subprocess.Popen, what: str, timeout: float = 300, every: float = 0.2
) -> None:
    """Wait until ``condition()`` holds while ``proc`` runs, failing after ``timeout``.

    Generous: a loaded CI machine may take minutes to start workers; a condition met at
    once costs no more than one poll.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the sweep ended (exit code {proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} within {timeout:.0f} s")
        time.sleep(every)


def test_kill_9_then_rerun_completes_every_trial_exactly_once(tmp_path: Path) -> None:
    spec_file = tmp_path / "kill.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "name": "kill-scan",
                "data": {"rows": 3000, "synth_seed": 5},
                "base": {"model": {"hidden": [8]}, "train": {"epochs": 4, "batch_size": 32}},
                "grid": {"learning_rate": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]},
            }
        )
    )
    out = tmp_path / "out"
    sweep_dir = out / "kill-scan"
    env = {**os.environ, "APPSLEUTH_CACHE": os.environ["APPSLEUTH_CACHE"]}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appsleuth",
            "sweep",
            "run",
            str(spec_file),
            "--out",
            str(out),
            "--workers",
            str(min(2, len(os.sched_getaffinity(0)))),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )

    def mid_way() -> bool:
        # A trial complete, one in training and one not started: the sweep cannot end
        # before the kill below (it still has a whole trial to train), however slowly
        # this process is scheduled.
        states = _states_now(sweep_dir)
        statuses = {st.status for st in states}
        return {"complete", "pending"} <= statuses and any(st.running for st in states)

    try:
        _wait_for(mid_way, proc, "a trial complete, one training and one pending")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process tree, mid-way
        proc.wait()
    before = {
        d.name: (d / "model_metadata.json").read_text()
        for d in sweep_dir.iterdir()
        if d.is_dir() and run_status(d) == "complete"
    }
    assert 1 <= len(before) < 6
    for d in sweep_dir.iterdir():  # nothing looks complete that is not
        if d.is_dir() and d.name not in before:
            assert run_status(d) == "incomplete"
            assert read_metadata(d) is None
    summary = run_local(sweep_dir, workers=1, progress=False)
    assert summary.count("skipped") == len(before)
    assert summary.count("complete") == 6 - len(before)
    for st in trial_states(sweep_dir):
        assert st.status == "complete"
        run_dir = sweep_dir / st.name
        assert len(pd.read_csv(run_dir / "model_history.csv")) == 4
        load_run(run_dir)  # valid model, preprocessor and checksums
        if st.name in before:  # completed before the kill: not redone
            assert (run_dir / "model_metadata.json").read_text() == before[st.name]
    assert not [p for p in sweep_dir.rglob(".*tmp*")]  # no temporary files left behind


def test_cli_exit_status_reports_failed_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 4]}), tmp_path)
    failed = sweep_dir / "model_1H2N_lr0.003_bs64_e2"
    failed.mkdir()
    (failed / "model_metadata.json").write_text(
        json.dumps({"status": "failed", "error": "ValueError: boom"})
    )
    assert main(["sweep", "worker", str(sweep_dir), "--index", "0"]) == 1
    assert "failed-before (ValueError: boom)" in capsys.readouterr().out


def test_cli_rerun_says_failed_trials_were_not_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec()
    spec_file = tmp_path / "t.yaml"
    spec_file.write_text(yaml.safe_dump(spec.to_dict()))
    failed = prepare_sweep_dir(spec, tmp_path / "runs") / spec.plan()[0].name
    failed.mkdir()
    (failed / "model_metadata.json").write_text(
        json.dumps({"status": "failed", "error": "ValueError: boom"})
    )
    assert main(["sweep", "run", str(spec_file), "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "1 trial(s) that failed before were not run again; add --retry-failed" in err


def test_status_tells_a_trial_in_training_from_an_interrupted_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from appsleuth.run import RUN_MARKER, _RunLock

    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [2, 4]}), tmp_path)
    names = read_plan(sweep_dir).names()
    for name in names:  # both started, neither finished
        (sweep_dir / name).mkdir()
        (sweep_dir / name / RUN_MARKER).write_text("")
    lock = _RunLock.create(sweep_dir / names[0] / RUN_MARKER)  # trial 0 is being trained
    try:
        states = trial_states(sweep_dir)
        assert [(s.status, s.running) for s in states] == [
            ("incomplete", True),
            ("incomplete", False),
        ]
        assert main(["sweep", "status", str(sweep_dir)]) == 0
        rows = [line for line in capsys.readouterr().out.splitlines() if "model_" in line]
        assert "running" in rows[0] and "incomplete" in rows[1], rows
        assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
        assert [r["running"] for r in json.loads(capsys.readouterr().out)] == [True, False]
    finally:
        lock.release()
    assert not any(s.running for s in trial_states(sweep_dir))  # interrupted, once let go


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_whose_parent_died_while_it_started_ends() -> None:
    # Killed before the worker's initializer ran: the worker has been re-parented
    # already, so it must compare with the pid its parent gave it, not os.getppid().
    code = (
        "import multiprocessing as mp, os, time\n"
        "from appsleuth.sweep import local\n"
        "ctx = mp.get_context('spawn')\n"
        "cores = ctx.Queue()\n"
        "cores.put((0, None))\n"
        "slots = local._Slots.create(ctx, 1)\n"
        "local._init_worker(os.getppid() + 100000, cores, 1, 'cpu', False, slots)\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], timeout=60, check=False, capture_output=True, text=True
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == 1  # os._exit(1) from the watch, not the end of the sleep (0)


@pytest.mark.parametrize("shared_gpu", [True, False])
def test_workers_sharing_a_gpu_allocate_its_memory_as_they_go(
    monkeypatch: pytest.MonkeyPatch, shared_gpu: bool
) -> None:
    # On TensorFlow each worker took the whole GPU at its first model: the second
    # worker sharing it ran out of memory. JAX's 75 % was already turned off.
    import queue
    import types

    from appsleuth.sweep import local

    for var in ("XLA_PYTHON_CLIENT_PREALLOCATE", "TF_FORCE_GPU_ALLOW_GROWTH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(local, "_exit_with_parent", lambda parent: None)
    monkeypatch.setattr(local, "apply_thread_limits", lambda threads, cores: None)
    monkeypatch.setattr(local.signal, "signal", lambda *args: None)
    monkeypatch.setattr(local, "_MY_SLOT", None)
    # A worker's exit handler ends its process with status 0 (os._exit): registered in
    # this test process, it made pytest exit 0 after failed tests. _preload freezes
    # every object of this process out of the garbage collector.
    exit_handlers: list = []
    monkeypatch.setattr(local, "atexit", types.SimpleNamespace(register=exit_handlers.append))
    monkeypatch.setattr(local, "_preload", lambda: None)
    cores: queue.Queue = queue.Queue()
    cores.put((0, None))
    slots = types.SimpleNamespace(pids=[0])
    local._init_worker(os.getpid(), cores, 1, "auto", shared_gpu, slots)
    assert exit_handlers == [local._skip_teardown]
    grow = {
        var: os.environ.get(var)
        for var in ("XLA_PYTHON_CLIENT_PREALLOCATE", "TF_FORCE_GPU_ALLOW_GROWTH")
    }
    if shared_gpu:
        assert grow == {
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        }
    else:
        assert grow == {"XLA_PYTHON_CLIENT_PREALLOCATE": None, "TF_FORCE_GPU_ALLOW_GROWTH": None}


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_their_parent(tmp_path: Path, how: signal.Signals) -> None:
    spec_file = tmp_path / "orphans.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "name": "orphans",
                "data": {"rows": 20000},
                "base": {"model": {"hidden": [8]}, "train": {"epochs": 40, "engine": "fit"}},
                "grid": {"learning_rate": [0.001, 0.002, 0.003, 0.004]},
            }
        )
    )
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "appsleuth", "sweep", "run", str(spec_file)),
            *("--out", str(tmp_path / "out"), "--workers", "2", "--threads-per-trial", "1"),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            # The pool's workers (spawned interpreters), not its resource tracker.
            workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
            time.sleep(0.3)
        assert len(workers) == 2, "the workers did not start"
        # Into their first trials (each holds its run directory's lock while it trains).
        sweep_dir = tmp_path / "out" / "orphans"
        _wait_for(
            lambda: sum(st.running for st in _states_now(sweep_dir)) == 2,
            proc,
            "both workers training a trial",
        )
        os.kill(proc.pid, how)
        proc.wait(timeout=60)
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.3)
        assert not any(_alive(w) for w in workers), "workers outlived the sweep process"
        if how == signal.SIGTERM:
            assert proc.returncode != 0
            assert "interrupted" in (proc.stderr.read() if proc.stderr else "")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_script_without_a_main_guard_is_told_why_nothing_trained(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import appsleuth as aps\n"
        "spec = aps.SweepSpec(name='g', data={'rows': 600}, base={'train': {'epochs': 1}},\n"
        "                     grid={'hidden_neurons': [2, 4]})\n"
        f"d = aps.prepare_sweep_dir(spec, {str(tmp_path / 'out')!r})\n"
        "aps.run_local(d, workers=2, threads_per_trial=1, progress=False)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode != 0
    assert 'call run_local under `if __name__ == "__main__":`' in done.stderr


def test_results_full_names_the_epoch_its_numbers_come_from(tmp_path: Path) -> None:
    from tests.test_analysis import fake_sweep

    # As early stopping with restored weights records it: results from epoch 2 of 4.
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}},
        lambda i, p: {"final_acc": 0.9, "extra": {"results_epoch": 2 + i}},
    )
    _, full = collect_results(sweep_dir)
    rich = pd.read_csv(full)
    assert rich["results_epoch"].tolist() == [2, 3]
    assert rich["min_val_loss_epoch"].notna().all()


def test_results_full_and_status_carry_moriarty_detection_at_1pct_false_alarms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_analysis import add_operating_point, fake_sweep

    monkeypatch.setenv("COLUMNS", "200")  # the table's headers on one line each
    # metrics.json recorded Moriarty's operating points, but the sweep's tables showed
    # none: trials could not be compared at the false-alarm rate an analyst works at.
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [16, 32, 64]}}, lambda i, p: {"final_acc": 0.9}
    )
    # No trial recorded one yet (runs from before operating points): no column of blanks.
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    assert "false alarms" not in capsys.readouterr().out
    trials = read_plan(sweep_dir)
    add_operating_point(sweep_dir / trials[0].name, threshold=0.42, detection_rate=0.75)
    add_operating_point(sweep_dir / trials[1].name, reason="not measurable: 60 benign sample(s)")
    results, full = collect_results(sweep_dir)
    rich = pd.read_csv(full)
    detection = rich["moriarty_detection_rate_at_1pct_false_alarms"]
    threshold = rich["moriarty_threshold_at_1pct_false_alarms"]
    assert detection[0] == 0.75 and threshold[0] == 0.42
    # Not measurable, and a run from before operating points: empty, not 0.
    assert detection[1:].isna().all() and threshold[1:].isna().all()
    # The teaching layout keeps its fixed columns.
    assert list(pd.read_csv(results).columns) == [
        "batch_size",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "Moriarty detection at 1 % false alarms" in " ".join(out.split())
    assert re.search(r"0\.750 +│", out)
    assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["moriarty_threshold_at_1pct_false_alarms"] == 0.42
    assert rows[2]["moriarty_detection_rate_at_1pct_false_alarms"] is None


def test_results_full_names_the_slurm_job_of_each_trial(tmp_path: Path) -> None:
    from tests.test_analysis import fake_sweep

    # The teaching material's extended tables have a Job_ID column: which log to read.
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}},
        lambda i, p: {"final_acc": 0.9, "extra": {"SLURM_JOB_ID": "4242_1"} if i else {}},
    )
    _, full = collect_results(sweep_dir)
    rich = pd.read_csv(full, dtype={"slurm_job_id": str})
    assert rich["slurm_job_id"].isna().tolist() == [True, False]
    assert rich["slurm_job_id"].iloc[1] == "4242_1"


def test_integer_columns_stay_integers_next_to_a_failed_trial(tmp_path: Path) -> None:
    from appsleuth.analysis import read_published
    from tests.test_analysis import fake_sweep

    # A failed trial's empty cells used to turn every integer column to float (``2.0``).
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32, 64]}, "repeats": 2},
        lambda i, p: (
            {"status": "failed", "error": "boom"}
            if i == 1
            else {"final_acc": 0.9, "extra": {"results_epoch": 2, "seed": i}}
        ),
    )
    results, full = collect_results(sweep_dir)
    # The cells as written (fit_reason holds commas, quoted).
    header, *lines = csv.reader(full.read_text().splitlines())
    cells = {col: [line[header.index(col)] for line in lines] for col in header}
    assert cells["results_epoch"][:3] == ["2", "", "2"]
    assert cells["epochs_run"][:3] == ["3", "", "3"]
    assert cells["min_val_loss_epoch"][:3] == ["3", "", "3"]
    assert cells["param_batch_size"][:3] == ["16", "16", "32"]
    assert cells["wall_time_s"][0] == "2.0"  # a float stays a float
    teaching = results.read_text().splitlines()
    assert teaching[0].startswith("batch_size,seed,") and teaching[1].startswith("16,0,")
    # Both files read back as before.
    rich = pd.read_csv(full)
    assert rich["results_epoch"].iloc[0] == 2 and pd.isna(rich["results_epoch"].iloc[1])
    assert read_published(results)["batch_size"].tolist() == [16, 32, 32, 64, 64]


def _one_trial_complete_in_another_directory(tmp_path: Path) -> tuple[Path, Path, str]:
    """A one-trial sweep trained in ``tmp_path/a`` and planned again in ``tmp_path/b``.

    Returns the two sweep directories and the trial's name.
    """
    spec = _spec(grid={"learning_rate": [0.003]})
    done_elsewhere = prepare_sweep_dir(spec, tmp_path / "a")
    assert run_trial(done_elsewhere, 0).status == "complete"
    return done_elsewhere, prepare_sweep_dir(spec, tmp_path / "b"), spec.plan()[0].name


def test_a_trial_finished_by_another_sweep_run_meanwhile_is_not_trained_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from appsleuth.sweep import worker

    done_elsewhere, sweep_dir, name = _one_trial_complete_in_another_directory(tmp_path)
    load = worker._cached_data

    def load_while_the_other_run_finishes(trial_spec):
        prepared = load(trial_spec)
        shutil.copytree(done_elsewhere / name, sweep_dir / name)
        return prepared

    monkeypatch.setattr(worker, "_cached_data", load_while_the_other_run_finishes)
    outcome = run_trial(sweep_dir, 0)
    assert outcome.status == "skipped"
    finished = json.loads((done_elsewhere / name / "model_metadata.json").read_text())
    kept = json.loads((sweep_dir / name / "model_metadata.json").read_text())
    assert kept == finished  # The other run's result, not a retrained one.


def test_a_trial_finished_elsewhere_while_training_starts_is_kept_not_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from appsleuth.sweep import worker

    done_elsewhere, sweep_dir, name = _one_trial_complete_in_another_directory(tmp_path)
    real_train = worker.train

    def finished_while_keras_starts(*args, **kwargs):
        shutil.copytree(done_elsewhere / name, sweep_dir / name)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(worker, "train", finished_while_keras_starts)
    assert run_trial(sweep_dir, 0).status == "skipped"
    finished = (done_elsewhere / name / "model_metadata.json").read_text()
    assert (sweep_dir / name / "model_metadata.json").read_text() == finished
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.startswith(".")) == []


# --- a complete run is this trial's only with this spec and data ----------------------------


def test_a_complete_run_of_another_spec_is_not_adopted_after_replanning(tmp_path: Path) -> None:
    # The recovery a damaged manifest's error suggests: move it away, plan again. The
    # run directory name does not show the activation, so the old run has the new name.
    spec = _spec(grid={"learning_rate": [0.003]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    assert run_trial(sweep_dir, 0).status == "complete"
    (sweep_dir / "manifest.json").rename(tmp_path / "old-manifest.json")
    other = _spec(
        grid={"learning_rate": [0.003]},
        base={**BASE, "model": {**BASE["model"], "activation": "tanh"}},
    )
    assert prepare_sweep_dir(other, tmp_path) == sweep_dir
    before = (sweep_dir / other.plan()[0].name / "model_metadata.json").read_text()
    message = r"holds a complete run of another spec \(differs in model\.activation\).*move"
    outcome = run_trial(sweep_dir, 0)
    assert outcome.status == "failed"
    assert re.search(message, outcome.error or "")
    summary = run_local(sweep_dir, workers=1)
    assert [o.status for o in summary.outcomes] == ["failed"] and summary.failed == 1
    assert re.search(message, summary.outcomes[0].error or "")
    assert (sweep_dir / other.plan()[0].name / "model_metadata.json").read_text() == before
    # status and results say so too: the relu run's numbers are not the tanh trial's.
    [state] = trial_states(sweep_dir)
    assert state.status == "failed" and re.search(message, state.error or "")
    results, full = collect_results(sweep_dir)
    assert pd.read_csv(results).empty
    assert pd.read_csv(full)["status"].tolist() == ["failed"]


def test_a_complete_run_of_replaced_data_is_not_adopted(tmp_path: Path) -> None:
    from appsleuth.data.synth import generate_sherlock
    from appsleuth.data.tables import write_table

    data = tmp_path / "d.csv"
    write_table(generate_sherlock(400, apps=["Facebook", "WhatsApp"], seed=1), data)
    spec = _spec(data={"path": str(data)}, grid={"learning_rate": [0.003, 0.004]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path / "out")
    assert [run_trial(sweep_dir, i).status for i in (0, 1)] == ["complete", "complete"]
    (sweep_dir / spec.plan()[1].name / "model_metadata.json").unlink()  # killed mid-trial
    write_table(generate_sherlock(300, apps=["Facebook", "WhatsApp"], seed=5), data, force=True)
    from appsleuth.sweep import worker

    worker._DATA_CACHE.clear()  # a new process: the file is read again
    outcome = run_trial(sweep_dir, 0)
    assert outcome.status == "failed"
    assert "holds a complete run of other data (data fingerprint" in (outcome.error or "")


def test_a_trial_whose_code_calls_sys_exit_fails_rather_than_ending_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local pool hands a worker's SystemExit back as the trial's result: it ended the
    # whole sweep with that exit code and no message, again at every re-run.
    from appsleuth.sweep import worker

    sweep_dir = prepare_sweep_dir(_spec(grid={"learning_rate": [0.003]}), tmp_path)

    def exits(*args, **kwargs):
        sys.exit(3)

    monkeypatch.setattr(worker, "train", exits)
    monkeypatch.setattr(worker, "_cached_data", lambda spec: None)  # not what this is about
    outcome = run_trial(sweep_dir, 0)
    said = r"^SystemExit: code in the trial called sys\.exit\(3\)$"
    assert outcome.status == "failed" and re.search(said, outcome.error or "")
    [state] = trial_states(sweep_dir)
    assert state.status == "failed" and re.search(said, state.error or "")  # as status shows


def test_a_trial_another_process_is_training_is_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from appsleuth.run import RunInUseError
    from appsleuth.sweep import worker

    spec = _spec(grid={"learning_rate": [0.003]})
    sweep_dir = prepare_sweep_dir(spec, tmp_path)

    def busy(*args, **kwargs):
        raise RunInUseError("run directory x is being trained by another process right now")

    monkeypatch.setattr(worker, "train", busy)
    outcome = run_trial(sweep_dir, 0)
    assert outcome.status == "running-elsewhere"
    assert "another process" in (outcome.error or "")
    assert main(["sweep", "worker", str(sweep_dir), "--index", "0"]) == 0
    assert "running-elsewhere" in capsys.readouterr().out


class _PoolWithAKilledWorker:
    """A process pool whose worker starts (takes its core set), then is lost.

    ``in_trial`` is the trial its worker says it is training (None: none) and
    ``exitcode`` how its process ended.
    """

    in_trial: int | None = None
    exitcode = -signal.SIGKILL

    def __init__(self, *, max_workers: int, mp_context, initializer, initargs) -> None:
        # Worker processes that keep their exit status through the fast exit.
        assert mp_context.Process.__name__ == "_WorkerProcess"
        slot, _ = initargs[1].get()  # what _init_worker does first in a started worker
        slots = initargs[5]
        slots.pids[slot] = 4242
        if self.in_trial is not None:
            slots.trials[slot] = self.in_trial
        self._processes = {4242: _EndedProcess(4242, self.exitcode)}

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_exception(BrokenProcessPool("A process in the process pool was terminated"))
        return future

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        del wait, cancel_futures


class _EndedProcess:
    def __init__(self, pid: int, exitcode: int) -> None:
        self.pid, self.exitcode = pid, exitcode

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        del timeout


class _PoolWithAWorkerStoppedInATrial(_PoolWithAKilledWorker):
    """A pool whose worker was stopped with SIGTERM (on purpose) while training trial 1."""

    in_trial = 1
    exitcode = -signal.SIGTERM


@pytest.mark.parametrize("pool", [_PoolWithAKilledWorker, _PoolWithAWorkerStoppedInATrial])
def test_a_worker_lost_without_a_trial_to_blame_stops_the_sweep_as_interrupted(
    pool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed between trials, or stopped with SIGTERM (as the pool stops its other workers
    # once one died): no trial is to blame, so none is failed. An interrupted sweep that
    # the same command resumes, not a script whose workers could not start.
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [3, 4]}), tmp_path)
    monkeypatch.setattr("appsleuth.sweep.local.ProcessPoolExecutor", pool)
    summary = run_local(sweep_dir, workers=1, progress=False)
    assert summary.interrupted
    assert summary.outcomes == ()
    assert [st.status for st in trial_states(sweep_dir)] == ["pending", "pending"]
    err = capsys.readouterr().err
    assert "so the sweep stopped" in err
    assert "run the same command again" in err
    assert "__main__" not in err
    if pool.in_trial is not None:
        # Which trial it was training is said, and what to do if it stops there again
        # (kill of that worker, or earlyoom, which sends SIGTERM when memory runs low).
        name = read_plan(sweep_dir)[pool.in_trial].name
        assert f"the worker process(es) training {name} were stopped by a signal" in err
        assert "out-of-memory killer such as earlyoom" in err
        assert "If it stops at the same trial again, give it more memory" in err


@pytest.mark.parametrize(
    ("exitcode", "words"),
    [
        (-signal.SIGKILL, "exit code -9 / SIGKILL, e.g. out of memory, or kill -9"),
        (-signal.SIGSEGV, "exit code -11 / SIGSEGV, a crash in native code"),
        (-signal.SIGABRT, "exit code -6 / SIGABRT, aborted by native code"),
        (-signal.SIGUSR1, "exit code -10 / SIGUSR1, killed by a signal"),
        (3, "exit code 3"),
    ],
)
def test_a_dead_workers_exit_code_is_said_in_words(exitcode: int, words: str) -> None:
    from appsleuth.sweep.local import _how_it_died

    assert _how_it_died(exitcode) == words


def _init_worker_that_dies_in_a_trial(*args) -> None:
    """A sweep worker's initializer that arms it to die (SIGKILL) training one trial.

    Module-level, so that the pool pickles it by name into its spawned workers; the
    trial's name comes from APPSLEUTH_TEST_DOOMED_TRIAL, which they inherit.
    """
    from appsleuth.sweep import local, worker

    local._init_worker(*args)
    doomed = os.environ.get("APPSLEUTH_TEST_DOOMED_TRIAL")
    train = worker.train

    def train_or_die(spec, **kwargs):
        if kwargs.get("name") == doomed:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
        return train(spec, **kwargs)

    worker.train = train_or_die


def test_a_trial_whose_worker_dies_fails_and_the_sweep_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(
        base={"model": {"hidden": [4]}, "train": {"epochs": 1, "batch_size": 64}},
        grid={"learning_rate": [0.001, 0.002, 0.003]},
    )
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(spec.to_dict()))
    sweep_dir = tmp_path / "out" / spec.name
    doomed = spec.plan()[1].name
    monkeypatch.setenv("APPSLEUTH_TEST_DOOMED_TRIAL", doomed)
    monkeypatch.setattr("appsleuth.sweep.local._init_worker", _init_worker_that_dies_in_a_trial)
    workers = str(min(2, len(os.sched_getaffinity(0))))
    args = ["sweep", "run", str(spec_file), "--out", str(tmp_path / "out"), "--workers", workers]
    assert main(args) == 1  # a failed trial, not an interrupted sweep (130)
    out, err = capsys.readouterr()
    assert "sweep t: 2 trained, 0 already complete, 1 failed" in out
    assert f"the worker process training {doomed} (exit code -9 / SIGKILL" in err
    # Only the dead worker's trial failed, with how its worker ended; the others are
    # complete, also one the other worker was training when the pool stopped it.
    died = r"^WorkerDied: the worker process training this trial died \(exit code -9 / SIGKILL"
    states = {st.name: st for st in trial_states(sweep_dir)}
    assert {n: st.status for n, st in states.items() if n != doomed} == {
        n: "complete" for n in spec.plan().names() if n != doomed
    }
    assert states[doomed].status == "failed"
    assert re.search(died, states[doomed].error or "")
    assert "--retry-failed" in (states[doomed].error or "")
    full = pd.read_csv(sweep_dir / "results_full.csv").set_index("name")
    assert full.loc[doomed, "status"] == "failed"
    assert re.search(died, full.loc[doomed, "error"])
    assert len(pd.read_csv(sweep_dir / "results.csv")) == 2
    # A re-run does not meet that trial again (no worker starts: it is quick) ...
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert "0 trained, 2 already complete, 1 failed" in out
    assert "1 trial(s) that failed before were not run again" in err
    # ... and --retry-failed trains it again: here its worker dies again, a new failure.
    before = states[doomed].metadata["timestamp"]
    assert main([*args, "--retry-failed"]) == 1
    out, err = capsys.readouterr()
    assert "0 trained, 2 already complete, 1 failed" in out
    assert "failed before were not run again" not in err
    [again] = [st for st in trial_states(sweep_dir) if st.name == doomed]
    assert again.status == "failed" and re.search(died, again.error or "")
    assert again.metadata["timestamp"] != before


class _PoolInterruptedByCtrlC(_PoolWithAKilledWorker):
    """A process pool during whose first trial the user presses Ctrl-C."""

    def submit(self, fn, *args) -> Future:
        raise KeyboardInterrupt


def test_ctrl_c_stops_the_caller_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A notebook's next cells (or a script's report) must not go on with a partial sweep.
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [3, 4]}), tmp_path)
    monkeypatch.setattr("appsleuth.sweep.local.ProcessPoolExecutor", _PoolInterruptedByCtrlC)
    # A KeyboardInterrupt: what a plain handler (and Jupyter) sees.
    with pytest.raises(
        KeyboardInterrupt, match=r"interrupted with 0 trial\(s\) complete; run the"
    ) as info:
        run_local(sweep_dir, workers=1, progress=False)
    assert isinstance(info.value, SweepInterrupted)
    assert info.value.summary.interrupted and info.value.summary.outcomes == ()


def test_a_kill_python_dropped_still_stops_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth.sweep.worker import TrialOutcome
    from tests.test_interrupt import sigterm_in_a_weakref_callback

    class PoolKilledWhileTraining(_PoolWithAKilledWorker):
        """A pool during whose first trial a SIGTERM lands in a weakref callback."""

        def submit(self, fn, *args) -> Future:
            assert sigterm_in_a_weakref_callback(monkeypatch) == [KeyboardInterrupt]
            future: Future = Future()
            future.set_result(TrialOutcome(index=args[1], name="t", status="complete", seconds=1))
            return future

    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [3, 4]}), tmp_path)
    monkeypatch.setattr("appsleuth.sweep.local.ProcessPoolExecutor", PoolKilledWhileTraining)
    with pytest.raises(SweepInterrupted):  # not the whole sweep trained
        run_local(sweep_dir, workers=1, progress=False)


def test_ctrl_c_in_sweep_run_collects_and_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(grid={"hidden_neurons": [3, 4]}).to_dict()))
    monkeypatch.setattr("appsleuth.sweep.local.ProcessPoolExecutor", _PoolInterruptedByCtrlC)
    assert main(["sweep", "run", str(spec_file), "--out", str(tmp_path), "--workers", "1"]) == 130
    assert "run the same command again to finish the remaining trials" in capsys.readouterr().err
    assert (tmp_path / "t" / "results.csv").exists()


@pytest.mark.parametrize(
    ("backend", "engines", "expected"),
    [
        ("tensorflow", ["fused", "auto", "fused"], "2 trial(s) that ask for it train with 'fit'"),
        ("torch", ["fused"], "needs the JAX backend (KERAS_BACKEND=torch); 1 trial(s)"),
        ("tensorflow", ["auto", "fit"], None),  # fit is their default there: nothing to say
        ("jax", ["fused"], None),
    ],
)
def test_local_sweep_says_once_when_fused_falls_back(
    backend, engines, expected, monkeypatch, capsys
):
    # Workers train with log=_quiet: without this note the fallback would be silent.
    from types import SimpleNamespace

    from appsleuth.sweep import local

    monkeypatch.setattr(local, "check_backend", lambda: backend)
    trials = [
        SimpleNamespace(spec=SimpleNamespace(train=SimpleNamespace(engine=e))) for e in engines
    ]
    local._note_engine_fallback(trials)
    err = capsys.readouterr().err
    if expected is None:
        assert err == ""
    else:
        assert expected in err and err.count("appsleuth:") == 1


def test_the_progress_line_shows_a_val_accuracy_of_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from appsleuth.sweep.local import _Progress
    from appsleuth.sweep.worker import TrialOutcome

    bar = _Progress(3, 0, 0, 1, enabled=False)
    bar.finished(TrialOutcome(index=0, name="r0", status="complete", seconds=1.0, val_accuracy=0.0))
    bar.finished(TrialOutcome(index=1, name="r1", status="failed", seconds=1.0, error="boom"))
    bar.finished(TrialOutcome(index=2, name="r2", status="skipped", seconds=0.1, val_accuracy=0.5))
    # The worker's seconds include loading data and compiling: said, as `sweep status`
    # shows the (shorter) training time; a trial only checked took no time worth showing.
    assert capsys.readouterr().err.splitlines() == [
        "[1/3] r0: complete val_accuracy 0.0000 1.0 s incl. start-up",
        "[2/3] r1: failed 1.0 s incl. start-up (boom)",
        "[3/3] r2: skipped val_accuracy 0.5000",
    ]


def test_sweep_results_print_counts_not_every_trial(tmp_path: Path) -> None:
    from appsleuth.sweep.local import LocalSummary
    from appsleuth.sweep.store import TrialState
    from appsleuth.sweep.worker import TrialOutcome

    outcomes = tuple(
        TrialOutcome(index=i, name=f"r{i}", status="failed" if i == 3 else "complete", seconds=1.0)
        for i in range(200)
    )
    summary = LocalSummary(
        sweep_dir=tmp_path, outcomes=outcomes, workers=2, threads_per_trial=1, wall_s=12.34
    )
    assert repr(summary) == (
        f"LocalSummary(sweep_dir={tmp_path!r}, trials: complete 199, failed 1, workers=2, "
        "threads_per_trial=1, wall_s=12.3, interrupted=False)"
    )
    state = TrialState(
        index=0,
        name="r0",
        params={"hidden_neurons": 1},
        status="complete",
        metadata={"classes": ["app"] * 50, "last_results": {"val_accuracy": 0.5}},
    )
    assert "metadata" not in repr(state) and "params={'hidden_neurons': 1}" in repr(state)


def test_in_jupyter_without_ipywidgets_the_progress_bar_gives_way_to_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # rich draws live bars in Jupyter through ipywidgets; without it, progress=True
    # showed nothing but rich's 'install "ipywidgets"' warning for the whole sweep.
    import importlib.util
    import warnings

    import rich.console

    from appsleuth.sweep.local import _Progress
    from appsleuth.sweep.worker import TrialOutcome

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ipywidgets" else find_spec(name, *a),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = _Progress(1, 0, 0, 1, enabled=True)
        bar.finished(TrialOutcome(index=0, name="r0", status="complete", seconds=1.0))
        bar.stop()
    assert capsys.readouterr().err == "[1/1] r0: complete 1.0 s incl. start-up\n"


def test_a_worker_ends_without_the_interpreters_teardown() -> None:
    # Its teardown (freeing JAX, Keras and the data object by object) took ~2 s per
    # worker, which every sweep waited for; exit handlers registered after the worker
    # started (Keras', JAX's) still run, and buffered output is not lost. The worker's
    # body runs as a pool's worker process runs it (run()); ended by sys.exit(3) here,
    # its status stays 3 (the fast exit made it 0).
    code = (
        "import atexit, os, sys\n"
        "atexit.register(print, 'teardown')\n"  # stands for the teardown after the handlers
        "from appsleuth.sweep import local\n"
        "local._preload = lambda: None\n"  # Keras' import is not what this is about
        "ctx = local._WorkerContext()\n"
        "cores = ctx.Queue()\n"
        "cores.put((0, None))\n"
        "slots = local._Slots.create(ctx, 1)\n"
        "def body():\n"
        "    local._init_worker(os.getppid(), cores, 1, 'cpu', False, slots)\n"
        "    atexit.register(print, 'later handler')\n"
        "    print('output', end='')\n"
        "    sys.exit(3)\n"
        "local._WorkerProcess(target=body).run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], timeout=60, check=False, capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "outputlater handler\n"


def _raise() -> None:
    raise RuntimeError("outside a trial")


@pytest.mark.parametrize(
    ("target", "args", "status"),
    [
        (print, ("",), 0),  # the pool shut it down: its body returned
        (sys.exit, (None,), 0),
        (sys.exit, (3,), 3),
        (sys.exit, ("a message",), 1),
        (_raise, (), 1),  # an uncaught exception outside a trial
    ],
)
def test_a_worker_that_ended_abnormally_does_not_exit_clean(
    monkeypatch: pytest.MonkeyPatch, target, args: tuple, status: int
) -> None:
    # Its last exit handler ends it with os._exit: it said 0 however the worker ended, so
    # a worker that died looked like one the pool shut down.
    from appsleuth.sweep import local

    monkeypatch.setattr(local, "_EXIT_STATUS", 0)  # put back: this process is no worker
    with contextlib.suppress(SystemExit, RuntimeError):
        local._WorkerProcess(target=target, args=args).run()
    exits: list[int] = []
    monkeypatch.setattr(local, "exit_without_teardown", exits.append)
    local._skip_teardown()
    assert exits == [status]


def test_a_worker_keeps_its_imported_modules_out_of_every_trials_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each trial's full collection (Keras' clear_session) scanned them all, ~0.25 s a trial.
    from appsleuth.sweep import local

    monkeypatch.setattr(local, "import_keras", lambda: None)  # seconds, if not imported yet
    monkeypatch.setattr(local, "_PRELOAD", ("appsleuth.plots",))
    try:
        local._preload()
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_collect_reads_each_trials_params_a_fixed_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from appsleuth.sweep import store

    # Every complete row used to walk every trial's params again (minutes at 5,000 trials).
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": list(range(1, 41))}), tmp_path)
    reads = []

    class _Counted(dict):
        def get(self, *args):
            reads.append(args[0])
            return super().get(*args)

    def complete_states(path, **kwargs):
        return [
            dataclasses.replace(
                st, status="complete", params=_Counted(st.params), metadata={"last_results": {}}
            )
            for st in trial_states(path, **kwargs)
        ]

    monkeypatch.setattr(store, "trial_states", complete_states)
    results, _ = collect_results(sweep_dir)
    assert pd.read_csv(results)["hidden_neurons"].tolist() == list(range(1, 41))
    assert len(reads) <= 3 * 40


def test_a_worker_checks_only_its_own_trial_of_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth.sweep import store
    from tests.test_analysis import write_fake_run

    # Each trial (a SLURM task, or the next trial of a local worker) built and checked
    # every trial's spec: about a second per trial at 5,000 trials.
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": list(range(1, 21))}), tmp_path)
    trial = read_plan(sweep_dir)[7]
    write_fake_run(sweep_dir / trial.name, status="failed", error="RuntimeError: diverged")
    checked = []
    real = store._trial_disagrees
    monkeypatch.setattr(store, "_trial_disagrees", lambda t: checked.append(t.index) or real(t))
    outcome = run_trial(sweep_dir, 7)
    assert outcome.status == "failed-before" and checked == [7]
    assert run_trial(sweep_dir, np.int64(7)).index == 7  # NumPy's integers are integers
    assert type(run_trial(sweep_dir, np.int64(7)).index) is int
    with pytest.raises(AppSleuthError, match=r"trial index must be in 0\.\.19; received index=20"):
        run_trial(sweep_dir, 20)
    # Refused with the plan's size, without building every trial to count them.
    for bad, kind in (("1", "str"), (7.0, "float"), (True, "bool")):
        said = rf"in 0\.\.19; received index={re.escape(repr(bad))} \(a {kind}, not an integer\)"
        with pytest.raises(AppSleuthError, match=said):
            run_trial(sweep_dir, bad)
    assert checked == [7, 7, 7]


@pytest.mark.parametrize("command", ["worker", "status"])
def test_a_slurm_task_ends_without_the_interpreters_teardown(tmp_path: Path, command) -> None:
    # `python -m appsleuth sweep worker` (each SLURM array task) spent ~2 s freeing JAX,
    # Keras and the data object by object after its trial was written.
    sweep_dir = prepare_sweep_dir(_spec(grid={"hidden_neurons": [2]}), tmp_path)
    args = ["sweep", command, str(sweep_dir)] + (["--index", "0"] if command == "worker" else [])
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('TEARDOWN', flush=True))\n"
        f"sys.argv = ['appsleuth', *{args!r}]\n"
        "runpy.run_module('appsleuth', run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if command == "worker":
        assert "trial 0 model_1H2N" in done.stdout and "complete" in done.stdout
        assert "TEARDOWN" not in done.stdout  # ended at once, its output flushed
        assert run_status(sweep_dir / read_plan(sweep_dir)[0].name) == "complete"
    else:
        assert "TEARDOWN" in done.stdout  # other commands end as usual
