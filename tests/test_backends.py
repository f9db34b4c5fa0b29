"""appsleuth on Keras' other backends, TensorFlow and PyTorch, for real (integration).

Each backend runs in the venv that ``.ci/backends-setup.sh`` builds (``.cache/backends-venv``
or ``$APPSLEUTH_BACKENDS_VENV``; the project's .venv stays JAX-only), in subprocesses: a
process fixes its backend when it first imports Keras, and this one runs on JAX. All of
them are started by one module fixture, both backends side by side, so that the module
costs well under a minute; pytest-xdist keeps a file in one process (``--dist loadfile``,
and the ``xdist_group`` for ``--dist loadgroup``), so they start once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from appsleuth.cli import main
from appsleuth.data.tables import embedded_data
from appsleuth.predict import predict
from appsleuth.run import METADATA, RunSpec, load_run, run_status
from appsleuth.run import train as train_run
from appsleuth.spec import ModelSpec, TrainSpec
from tests.conftest import REPO, require_component

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("backends")]

BACKENDS = ("tensorflow", "torch")
VENV = Path(os.environ.get("APPSLEUTH_BACKENDS_VENV") or REPO / ".cache" / "backends-venv")
PYTHON = VENV / "bin" / "python"
# Written by the setup script once Keras ran on every backend there: a venv left half
# installed by a failed setup counts as missing.
STAMP = VENV / ".appsleuth-backends"
# Every file a complete run directory holds (README, "What a run leaves behind").
RUN_FILES = {
    "model_history.csv",
    "model_metadata.json",
    "model.keras",
    "preprocessor.json",
    "spec.yaml",
    "metrics.json",
    "loss_acc_plot.png",
    "confusion_matrix.png",
    ".appsleuth-run",
}
TRAIN = ["--hidden", "4", "--epochs", "2", "--rows", "300", "--quiet"]

# The second process on the backend under test: threads limited first (as the CLI does
# before Keras starts), then the CLI's predict with the model trained there, and the
# Python API as a notebook uses it: training with class weights and early stopping, and
# the JAX-trained model loaded and applied. One process for all, as each costs seconds of
# imports (TensorFlow, PyTorch and JAX: Keras imports all it finds).
_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from appsleuth.hardware import configure_backend

    applied = configure_backend(threads=1)
    import appsleuth as aps
    import keras
    import pandas as pd
    from appsleuth.cli import main

    runs, jax_run, new_csv = sys.argv[1:]
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        threads = torch.get_num_threads()
    else:
        threads = int(os.environ["TF_NUM_INTRAOP_THREADS"])
    predict_code = main(["predict", runs, new_csv, "--out", "preds.csv"])
    df = aps.embedded_data(300)
    spec = aps.RunSpec(
        model=aps.ModelSpec(hidden=(3,)),
        train=aps.TrainSpec(epochs=3, class_weight="balanced", early_stopping={"patience": 0}),
    )
    result = aps.train(spec, data=df, out="api-runs", verbose=False)
    jax_preds = aps.predict(jax_run, pd.read_csv(new_csv, index_col=0))
    print(json.dumps({
        "backend": backend,
        "started_late": applied["backend_already_imported"],
        "threads": threads,
        "predict_code": predict_code,
        "metadata": result.metadata,
        "jax_run_probabilities": jax_preds["probability"].tolist(),
        "jax_run_apps": jax_preds["predicted_app"].tolist(),
    }))
    """
)


@dataclass
class _Done:
    code: int
    out: str
    err: str


class _Process:
    """One subprocess in the backends venv, its output in files (no pipe can fill up)."""

    def __init__(self, backend: str, argv: list[str], workdir: Path, name: str) -> None:
        env = {
            **os.environ,
            "KERAS_BACKEND": backend,
            # This checkout's code, whichever checkout the venv was installed from.
            "PYTHONPATH": str(REPO / "src"),
            "APPSLEUTH_CACHE": str(workdir / "cache"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        self._out = (workdir / f"{name}.out").open("w+")
        self._err = (workdir / f"{name}.err").open("w+")
        self._proc = subprocess.Popen(
            [str(PYTHON), *argv], cwd=workdir, env=env, stdout=self._out, stderr=self._err
        )

    def wait(self) -> _Done:
        try:
            code = self._proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        texts = []
        for fh in (self._out, self._err):
            fh.seek(0)
            texts.append(fh.read())
            fh.close()
        return _Done(code, *texts)


def _cli(backend: str, args: list[str], workdir: Path, name: str) -> _Process:
    return _Process(backend, ["-m", "appsleuth", *args], workdir, name)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train, predict and use the Python API on each backend; the outcomes by backend."""
    require_component(
        f"a venv with TensorFlow and PyTorch at {VENV} (bash .ci/backends-setup.sh)",
        PYTHON.exists() and STAMP.exists(),
    )
    base = tmp_path_factory.mktemp("backends")
    work = {b: base / b for b in BACKENDS}
    for path in work.values():
        path.mkdir()
    # A fused engine asked for on another backend must be announced, not silent.
    training = {
        b: _cli(
            b, ["train", *TRAIN, "--engine", "fused", "--threads", "1", "--out", "runs"], d, "t"
        )
        for b, d in work.items()
    }
    new_csv = base / "new.csv"
    embedded_data(80, seed=7).to_csv(new_csv)
    new_rows = pd.read_csv(new_csv, index_col=0)  # as the other processes read it
    # Meanwhile, on JAX in this process: a model for the other backends to load.
    jax_run = train_run(
        RunSpec(model=ModelSpec(hidden=(4,)), train=TrainSpec(epochs=1)),
        data=embedded_data(300),
        out=base / "jax-runs",
        verbose=False,
    ).run_dir
    outcome: dict[str, Any] = {"jax_run": jax_run, "new_rows": new_rows}
    for b, d in work.items():
        done = training[b].wait()
        runs = sorted((d / "runs").glob("*/")) if done.code == 0 else []
        outcome[b] = {"train": done, "run_dir": runs[0] if len(runs) == 1 else None}
    scripts = {
        b: _Process(b, ["-c", _SCRIPT, "runs", str(jax_run), str(new_csv)], d, "script")
        for b, d in work.items()
        if outcome[b]["run_dir"] is not None
    }
    for b, d in work.items():
        if b in scripts:
            done = scripts[b].wait()
            lines = done.out.strip().splitlines()
            outcome[b]["script"] = done
            outcome[b]["api"] = json.loads(lines[-1]) if done.code == 0 and lines else None
            outcome[b]["preds"] = d / "preds.csv"
    return outcome


def _explain(done: _Done) -> str:
    return f"exit code {done.code}\n--- stdout\n{done.out[-3000:]}\n--- stderr\n{done.err[-3000:]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, results: dict[str, Any]) -> dict[str, Any]:
    """One backend's outcomes, with its name."""
    return {"name": request.param, **results[request.param]}


def test_train_says_fused_falls_back_to_fit(backend: dict[str, Any]) -> None:
    done = backend["train"]
    assert done.code == 0, _explain(done)
    name = backend["name"]
    assert (
        f"appsleuth: engine 'fused' needs the JAX backend (KERAS_BACKEND={name}); using 'fit'"
        in done.err
    )
    assert "(fit engine," in done.err and "Traceback" not in done.err


def test_train_leaves_a_complete_run_that_records_backend_and_engine(
    backend: dict[str, Any],
) -> None:
    run_dir = backend["run_dir"]
    assert run_dir is not None, _explain(backend["train"])
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES
    assert run_status(run_dir) == "complete"
    meta = json.loads((run_dir / METADATA).read_text())
    assert meta["backend"] == backend["name"] and meta["hardware"]["backend"] == backend["name"]
    assert meta["engine"] == "fit"
    assert re.fullmatch(r"2\.\d+\.\d+.*", meta["backend_version"])  # TensorFlow 2, torch 2
    assert meta["engine_note"] == (
        f"engine 'fused' needs the JAX backend (KERAS_BACKEND={backend['name']}); using 'fit'"
    )
    assert len(pd.read_csv(run_dir / "model_history.csv")) == 2
    # --threads 1 pinned the process to one core.
    assert meta["hardware"]["cores_available"] == 1


def test_predict_with_the_model_trained_there(
    backend: dict[str, Any], results: dict[str, Any]
) -> None:
    assert backend.get("api") is not None, _explain(backend.get("script") or backend["train"])
    assert backend["api"]["predict_code"] == 0, _explain(backend["script"])
    preds = pd.read_csv(backend["preds"])
    assert len(preds) == len(results["new_rows"])
    assert preds["probability"].between(0, 1).all()
    # The same file on JAX, from the same model: the same answers.
    here = predict(backend["run_dir"], results["new_rows"])
    assert list(here["predicted_app"]) == list(preds["predicted_app"])
    assert here["probability"].to_numpy() == pytest.approx(preds["probability"], abs=1e-5)


def test_python_api_with_threads_class_weights_and_early_stopping(
    backend: dict[str, Any],
) -> None:
    api = backend.get("api")
    assert api is not None, _explain(backend.get("script") or backend["train"])
    assert api["backend"] == backend["name"]
    assert not api["started_late"] and api["threads"] == 1
    meta = api["metadata"]
    assert meta["status"] == "complete" and meta["backend"] == backend["name"]
    assert meta["engine"] == "fit" and meta["engine_note"] is None  # fit is the default there
    assert meta["spec"]["train"]["class_weight"] == "balanced"
    assert 1 <= meta["results_epoch"] <= meta["epochs_run"] <= 3


def test_a_model_trained_on_jax_predicts_the_same_there(
    backend: dict[str, Any], results: dict[str, Any]
) -> None:
    api = backend.get("api")
    assert api is not None, _explain(backend.get("script") or backend["train"])
    here = predict(results["jax_run"], results["new_rows"])
    assert api["jax_run_apps"] == list(here["predicted_app"])
    assert api["jax_run_probabilities"] == pytest.approx(list(here["probability"]), abs=1e-5)


def test_report_on_a_run_trained_there(backend: dict[str, Any], tmp_path: Path) -> None:
    assert backend["run_dir"] is not None, _explain(backend["train"])
    out = tmp_path / "report.html"
    assert main(["report", str(backend["run_dir"]), "--out", str(out)]) == 0
    assert backend["name"] in out.read_text(encoding="utf-8")
    assert load_run(backend["run_dir"]).metadata["backend"] == backend["name"]
