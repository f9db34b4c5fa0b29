"""appsleuth on Keras' other backends, TensorFlow and PyTorch, for real (integration).

Each backend runs in the venv that ``.ci/backends-setup.sh`` builds (``.cache/backends-venv``
or ``$APPSLEUTH_BACKENDS_VENV``; the project's .venv stays JAX-only), in subprocesses: a
process fixes its backend when it first imports Keras, and this one runs on JAX. One process
per backend, both started by one module fixture side by side, so that the module costs
well under a minute; pytest-xdist keeps a file in one process (``--dist loadfile``,
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

# The one process on the backend under test (each costs seconds of imports: TensorFlow,
# PyTorch and JAX, as Keras imports all it finds). First the CLI, as `appsleuth` runs it:
# train, asking for the fused engine (its fallback to fit must be announced) with one
# thread (applied before Keras starts), then predict with the model trained there. Then
# the Python API as a notebook uses it: training with class weights and early stopping,
# and the model trained on JAX in the test process loaded and applied.
_SCRIPT = textwrap.dedent(
    """
    import json, os, sys

    imported_first = [m for m in ("keras", "tensorflow", "torch") if m in sys.modules]
    from appsleuth.cli import main

    train, new_csv, jax_run = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    train_code = main(["train", *train, "--out", "runs"])
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        threads = torch.get_num_threads()
    else:
        threads = int(os.environ["TF_NUM_INTRAOP_THREADS"])
    predict_code = main(["predict", "runs", new_csv, "--out", "preds.csv"])

    import appsleuth as aps
    import pandas as pd

    df = aps.embedded_data(300)
    spec = aps.RunSpec(
        model=aps.ModelSpec(hidden=(3,)),
        train=aps.TrainSpec(epochs=3, class_weight="balanced", early_stopping={"patience": 0}),
    )
    result = aps.train(spec, data=df, out="api-runs", verbose=False)
    jax_preds = aps.predict(jax_run, pd.read_csv(new_csv, index_col=0))
    print(json.dumps({
        "imported_first": imported_first,
        "train_code": train_code,
        "backend": backend,
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


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train, predict and use the Python API on each backend; the outcomes by backend."""
    require_component(
        f"a venv with TensorFlow and PyTorch at {VENV} (bash .ci/backends-setup.sh)",
        PYTHON.exists() and STAMP.exists(),
    )
    base = tmp_path_factory.mktemp("backends")
    new_csv = base / "new.csv"
    embedded_data(80, seed=7).to_csv(new_csv)
    new_rows = pd.read_csv(new_csv, index_col=0)  # as the other processes read it
    # First, on JAX in this process: a model for the other backends to load.
    jax_run = train_run(
        RunSpec(model=ModelSpec(hidden=(4,)), train=TrainSpec(epochs=1)),
        data=embedded_data(300),
        out=base / "jax-runs",
        verbose=False,
    ).run_dir
    train = [*TRAIN, "--engine", "fused", "--threads", "1"]
    processes = {}
    for b in BACKENDS:
        (base / b).mkdir()
        argv = ["-c", _SCRIPT, json.dumps(train), str(new_csv), str(jax_run)]
        processes[b] = _Process(b, argv, base / b, "script")
    outcome: dict[str, Any] = {"jax_run": jax_run, "new_rows": new_rows}
    for b, process in processes.items():
        done = process.wait()
        lines = done.out.strip().splitlines()
        runs = sorted((base / b / "runs").glob("*/"))
        outcome[b] = {
            "done": done,
            "result": json.loads(lines[-1]) if done.code == 0 and lines else None,
            "run_dir": runs[0] if len(runs) == 1 else None,
            "preds": base / b / "preds.csv",
        }
    return outcome


def _explain(done: _Done) -> str:
    return f"exit code {done.code}\n--- stdout\n{done.out[-3000:]}\n--- stderr\n{done.err[-3000:]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, results: dict[str, Any]) -> dict[str, Any]:
    """One backend's outcomes, with its name; fails with the process's output if it did."""
    outcome = results[request.param]
    assert outcome["result"] is not None, _explain(outcome["done"])
    return {"name": request.param, **outcome}


def test_train_says_fused_falls_back_to_fit(backend: dict[str, Any]) -> None:
    assert backend["result"]["imported_first"] == []  # --threads applied before the backend
    assert backend["result"]["train_code"] == 0, _explain(backend["done"])
    name = backend["name"]
    note = f"appsleuth: engine 'fused' needs the JAX backend (KERAS_BACKEND={name}); using 'fit'"
    assert backend["done"].err.count(note) == 1  # the API's run uses fit, its default there
    assert "(fit engine," in backend["done"].err and "Traceback" not in backend["done"].err


def test_train_leaves_a_complete_run_that_records_backend_and_engine(
    backend: dict[str, Any],
) -> None:
    run_dir = backend["run_dir"]
    assert run_dir is not None, _explain(backend["done"])
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


def test_threads_one_reaches_the_backend(backend: dict[str, Any]) -> None:
    # torch's intra-op pool, or the variable TensorFlow reads when it starts.
    assert backend["result"]["threads"] == 1
    meta = json.loads((backend["run_dir"] / METADATA).read_text())
    assert meta["hardware"]["cores_available"] == 1  # and the process pinned to one core


def test_predict_with_the_model_trained_there(
    backend: dict[str, Any], results: dict[str, Any]
) -> None:
    assert backend["result"]["predict_code"] == 0, _explain(backend["done"])
    preds = pd.read_csv(backend["preds"])
    assert len(preds) == len(results["new_rows"])
    assert preds["probability"].between(0, 1).all()
    # The same file on JAX, from the same model: the same answers.
    here = predict(backend["run_dir"], results["new_rows"])
    assert list(here["predicted_app"]) == list(preds["predicted_app"])
    assert here["probability"].to_numpy() == pytest.approx(preds["probability"], abs=1e-5)


def test_python_api_with_class_weights_and_early_stopping(backend: dict[str, Any]) -> None:
    assert backend["result"]["backend"] == backend["name"]
    meta = backend["result"]["metadata"]
    assert meta["status"] == "complete" and meta["backend"] == backend["name"]
    assert meta["engine"] == "fit" and meta["engine_note"] is None  # fit is the default there
    assert meta["spec"]["train"]["class_weight"] == "balanced"
    assert 1 <= meta["results_epoch"] <= meta["epochs_run"] <= 3


def test_a_model_trained_on_jax_predicts_the_same_there(
    backend: dict[str, Any], results: dict[str, Any]
) -> None:
    here = predict(results["jax_run"], results["new_rows"])
    assert backend["result"]["jax_run_apps"] == list(here["predicted_app"])
    assert backend["result"]["jax_run_probabilities"] == pytest.approx(
        list(here["probability"]), abs=1e-5
    )


def test_report_on_a_run_trained_there(backend: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(backend["run_dir"]), "--out", str(out)]) == 0
    assert backend["name"] in out.read_text(encoding="utf-8")
    assert load_run(backend["run_dir"]).metadata["backend"] == backend["name"]
