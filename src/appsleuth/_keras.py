"""Import Keras with appsleuth's default backend (JAX) unless ``KERAS_BACKEND`` says otherwise."""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["import_keras"]


def import_keras() -> ModuleType:
    """Return the ``keras`` module, choosing JAX when no backend was requested.

    The backend is fixed at Keras' first import, so every appsleuth module that needs
    Keras imports it through here.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    return keras
