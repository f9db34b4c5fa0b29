"""Which Keras backend appsleuth uses: JAX by default, KERAS_BACKEND honoured, never keras.json."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types

import pytest

from appsleuth import hardware
from appsleuth._keras import backend_name, backend_version, check_backend
from appsleuth.cli import main
from appsleuth.errors import AppSleuthWarning, SpecError


def _fake_keras(backend: str) -> types.ModuleType:
    """A stand-in for a ``keras`` module already imported on ``backend``."""
    module = types.ModuleType("keras")
    module.backend = types.SimpleNamespace(backend=lambda: backend)
    return module


@pytest.fixture
def keras_not_imported(monkeypatch):
    """This process as before its first ``import keras`` (restored afterwards)."""
    monkeypatch.delitem(sys.modules, "keras", raising=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "jax"), ("", "jax"), ("jax", "jax"), ("tensorflow", "tensorflow"), ("torch", "torch")],
)
def test_backend_before_keras_is_imported(value, expected, monkeypatch, keras_not_imported):
    if value is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", value)
    assert backend_name() == expected


def test_keras_imported_first_decides_and_the_environment_follows(monkeypatch):
    # A notebook ran `import keras` first and keras.json chose TensorFlow: the variable
    # must say so, or sweep workers (which inherit it) would train on JAX.
    monkeypatch.setitem(sys.modules, "keras", _fake_keras("tensorflow"))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert check_backend() == "tensorflow"
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    assert hardware.describe_hardware()["backend"] == "tensorflow"


def test_a_backend_set_after_keras_started_is_named_as_ignored(monkeypatch):
    # A notebook that set KERAS_BACKEND after training once went on with the backend
    # Keras had, and appsleuth overwrote the variable without a word.
    monkeypatch.setitem(sys.modules, "keras", _fake_keras("jax"))
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.warns(
        AppSleuthWarning,
        match=r"KERAS_BACKEND='torch' is ignored: Keras started on 'jax' in this process and "
        r"cannot change backends; appsleuth uses 'jax'\. To use 'torch', restart the kernel",
    ):
        assert check_backend() == "jax"
    assert os.environ["KERAS_BACKEND"] == "jax"


def test_unset_backend_is_written_as_jax(monkeypatch, keras_not_imported):
    monkeypatch.setenv("KERAS_BACKEND", "")
    assert check_backend() == "jax"
    assert os.environ["KERAS_BACKEND"] == "jax"


def test_unsupported_backend_is_a_spec_error(monkeypatch, keras_not_imported):
    monkeypatch.setenv("KERAS_BACKEND", "tf")
    with pytest.raises(
        SpecError,
        match=r"KERAS_BACKEND must be 'jax' \(appsleuth's default\), 'tensorflow' or 'torch'; "
        r"received KERAS_BACKEND='tf'",
    ):
        check_backend()


@pytest.mark.parametrize(
    ("value", "missing", "message"),
    [
        ("torch", "torch", r"^KERAS_BACKEND='torch' but the 'torch' package is not installed"),
        (
            None,
            "jax",
            r"^KERAS_BACKEND is unset, which means 'jax' \(appsleuth's default\), but the "
            r"'jax' package is not installed in this Python \(.+\); install it, or set "
            r"KERAS_BACKEND to one of 'tensorflow', 'torch'$",
        ),
    ],
)
def test_missing_backend_package_is_a_spec_error(
    value, missing, message, monkeypatch, keras_not_imported
):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    if value is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", value)
    with pytest.raises(SpecError, match=message):
        check_backend()


def test_cli_reports_a_bad_backend_without_a_traceback(monkeypatch, keras_not_imported, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "tf")
    code = main(["train", "--rows", "50", "--epochs", "1"])  # conftest undoes its thread setup
    err = capsys.readouterr().err
    assert code == 2
    assert "received KERAS_BACKEND='tf'" in err and "Traceback" not in err


# Stops the interpreter at its first `import keras`, printing the backend Keras would
# read there: KERAS_BACKEND, or keras.json when that is unset (printed as None).
_FIRST_KERAS_IMPORT = """
import os, sys

class _Stop:
    def find_spec(self, name, path=None, target=None):
        if name == "keras":
            print(os.environ.get("KERAS_BACKEND"), flush=True)
            os._exit(0)

sys.meta_path.insert(0, _Stop())
import appsleuth.engines
print("keras never imported")
"""


def test_engines_import_keras_on_jax_not_on_keras_json():
    # With KERAS_BACKEND unset Keras reads ~/.keras/keras.json; the engines (the public
    # run_fused) must bring it up on JAX, appsleuth's default, as the rest of appsleuth does.
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_KERAS_IMPORT],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "jax"


def test_backend_version_names_the_package_of_the_backend_in_use(monkeypatch):
    # Run metadata recorded the Keras version but not the backend's: a history from
    # TensorFlow 2.16 and one from 2.21 looked alike.
    monkeypatch.setitem(sys.modules, "keras", _fake_keras("torch"))
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="2.13.0+cpu"))
    assert backend_version() == "2.13.0+cpu"


def test_backend_version_does_not_start_a_backend(monkeypatch, keras_not_imported):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert backend_version() is None
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize(("given", "kept"), [(None, "0"), ("2.5", "2.5")])
def test_every_compiled_program_is_kept_for_the_next_process(monkeypatch, given, kept):
    # JAX keeps only programs that took over 1 s to compile: each sweep worker or SLURM
    # task compiled the weight initializers and the evaluation program again (~2 s).
    # A value the user set is kept.
    from appsleuth._keras import import_keras

    monkeypatch.setitem(sys.modules, "keras", _fake_keras("jax"))
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # as before JAX's first import
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/nonexistent/jax-cache")
    if given is None:
        monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    else:
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", given)
    import_keras()
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == kept
