"""Import Keras with appsleuth's default backend (JAX) unless ``KERAS_BACKEND`` says otherwise."""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["import_keras"]


def import_keras() -> ModuleType:
    """Return the ``keras`` module, choosing JAX when no backend was requested.

    The backend is fixed at Keras' first import, so every appsleuth module that needs
    Keras imports it through here. On JAX, compiled programs are kept in a persistent
    cache shared by all processes (``$APPSLEUTH_CACHE/jax``, or wherever
    ``JAX_COMPILATION_CACHE_DIR`` points): sweep workers and repeated runs of the same
    architecture then skip most of the compilation.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ["KERAS_BACKEND"] == "jax" and "jax" not in __import__("sys").modules:
        from appsleuth.data.tables import cache_dir

        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir() / "jax"))
    import keras

    return keras
