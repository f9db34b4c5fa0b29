"""Import Keras with appsleuth's default backend (JAX) unless ``KERAS_BACKEND`` says otherwise."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

from appsleuth.errors import SpecError, warn

__all__ = [
    "BACKENDS",
    "backend_name",
    "backend_problem",
    "backend_version",
    "check_backend",
    "import_keras",
]

# The backends appsleuth supports, each with the package Keras needs for it.
BACKENDS = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}


def backend_name() -> str:
    """The Keras backend this process uses, or will use once Keras is imported.

    Keras decides at its first import: from ``KERAS_BACKEND`` or, when that is unset,
    from ``~/.keras/keras.json``. appsleuth's default is JAX, so when it imports Keras
    itself an unset (or empty) ``KERAS_BACKEND`` means JAX and ``keras.json`` is not read.
    Keras imported before appsleuth (``import keras`` first in a notebook) has already
    decided, and its choice is the answer.
    """
    keras = sys.modules.get("keras")
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    if callable(backend):
        return str(backend())
    return os.environ.get("KERAS_BACKEND") or "jax"


def backend_version(name: str | None = None) -> str | None:
    """The version of the backend's package (JAX, TensorFlow or PyTorch).

    Args:
        name: The backend. Defaults to None: the one in use (:func:`backend_name`).

    Returns:
        Its version, or None while its package is not imported: asking starts nothing.
    """
    module = sys.modules.get(BACKENDS.get(name or backend_name(), ""))
    version = getattr(module, "__version__", None)
    return None if version is None else str(version)


def backend_problem() -> str | None:
    """Why :func:`check_backend` would refuse the backend now, or None when it would not.

    For diagnostics (``appsleuth info``) that must show a bad ``KERAS_BACKEND`` without
    stopping; training raises the same message as a :class:`SpecError`.
    """
    name = backend_name()
    if "keras" in sys.modules:
        return None  # Keras has decided already: its backend is the one in use
    if name not in BACKENDS:
        return (
            f"KERAS_BACKEND must be 'jax' (appsleuth's default), 'tensorflow' or "
            f"'torch'; received KERAS_BACKEND={name!r}"
        )
    package = BACKENDS[name]
    if importlib.util.find_spec(package) is None:
        given = (
            f"KERAS_BACKEND={name!r}"
            if os.environ.get("KERAS_BACKEND")
            else "KERAS_BACKEND is unset, which means 'jax' (appsleuth's default),"
        )
        others = ", ".join(repr(b) for b in BACKENDS if b != name)
        return (
            f"{given} but the {package!r} package is not installed in this Python "
            f"({sys.executable}); install it, or set KERAS_BACKEND to one of {others}"
        )
    return None


def check_backend() -> str:
    """Fix ``KERAS_BACKEND`` to the backend in use (see :func:`backend_name`) and return it.

    The variable is written so that what this process records (run metadata,
    ``appsleuth info``) and the processes it starts (sweep workers) agree with the
    backend Keras really uses, even when ``keras.json`` chose it.

    Raises:
        SpecError: Keras is not imported yet and ``KERAS_BACKEND`` names a backend
            appsleuth does not support, or one whose package is not installed.
    """
    problem = backend_problem()
    if problem is not None:
        raise SpecError(problem)
    name = backend_name()
    asked = os.environ.get("KERAS_BACKEND")
    if asked and asked != name:
        # Set in a notebook after Keras started: without a word, the variable would be
        # overwritten and the work done on the backend Keras already has.
        warn(
            f"KERAS_BACKEND={asked!r} is ignored: Keras started on {name!r} in this "
            f"process and cannot change backends; appsleuth uses {name!r}. To use "
            f"{asked!r}, restart the kernel (or Python) and set KERAS_BACKEND before "
            f"the first import of keras"
        )
    os.environ["KERAS_BACKEND"] = name
    return name


def import_keras() -> ModuleType:
    """Return the ``keras`` module, choosing JAX when no backend was requested.

    The backend is fixed at Keras' first import, so every appsleuth module that needs
    Keras imports it through here. On JAX, compiled programs are kept in a persistent
    cache shared by all processes (``$APPSLEUTH_CACHE/jax``, or wherever
    ``JAX_COMPILATION_CACHE_DIR`` points): sweep workers and repeated runs of the same
    architecture then skip most of the compilation. Every program is kept, not only
    those that took JAX's default 1 s to compile: each new process otherwise compiled
    the weight initializers and the evaluation program again (~2 s a process).

    Raises:
        SpecError: ``KERAS_BACKEND`` is unsupported or its package is missing
            (see :func:`check_backend`).
    """
    if check_backend() == "jax" and "jax" not in sys.modules:
        from appsleuth.data.tables import cache_dir

        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir() / "jax"))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    import keras

    return keras
