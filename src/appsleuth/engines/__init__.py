"""Training engines: ``fused`` (one compiled JAX program per epoch) and ``fit`` (Keras).

Both take a built, compiled Keras model and the arguments of ``keras.Model.fit`` and
return a :class:`keras.callbacks.History`, so a caller can swap them freely.
:func:`resolve_engine` picks the engine for a model and says why when ``fused`` cannot
serve; it never falls back silently.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from appsleuth._keras import import_keras

# Before the engine modules import Keras themselves: it picks appsleuth's default backend
# (JAX) rather than the one in ~/.keras/keras.json when KERAS_BACKEND is unset.
keras = import_keras()

from appsleuth.engines.epoch_timer import EpochTimer  # noqa: E402
from appsleuth.engines.fit import check_steps_per_execution, run_fit  # noqa: E402
from appsleuth.engines.fused import (  # noqa: E402
    clear_fused_cache,
    fused_unsupported_reason,
    run_fused,
)
from appsleuth.errors import SpecError  # noqa: E402

__all__ = [
    "Engine",
    "EpochTimer",
    "clear_fused_cache",
    "default_engine",
    "fused_unsupported_reason",
    "resolve_engine",
    "run_engine",
    "run_fit",
    "run_fused",
]

Engine = Literal["fused", "fit"]
_ENGINES: tuple[str, ...] = get_args(Engine)


def default_engine() -> Engine:
    """The engine to use when none is asked for: ``fused`` on the JAX backend, else ``fit``."""
    return "fused" if keras.backend.backend() == "jax" else "fit"


def resolve_engine(requested: str | None, model: Any) -> tuple[Engine, str | None]:
    """Choose the engine that will train ``model``.

    Args:
        requested: ``"fused"``, ``"fit"``, or None for :func:`default_engine`.
        model: The compiled Keras model to train.

    Returns:
        The engine, and None or, when ``fused`` was asked for (or is the default) but
        cannot serve this model, a message saying why ``fit`` is used instead.

    Raises:
        SpecError: ``requested`` is not an engine name.
    """
    if requested is not None and requested not in _ENGINES:
        raise SpecError(f"engine must be 'fused' or 'fit'; received engine={requested!r}")
    engine = requested or default_engine()
    if engine == "fit":
        return "fit", None
    reason = fused_unsupported_reason(model)
    if reason is None:
        return "fused", None
    return "fit", f"{reason}; using 'fit'"


def run_engine(engine: str, model: Any, x: Any, y: Any, **kwargs: Any) -> keras.callbacks.History:
    """Train ``model`` with ``engine`` (see :func:`run_fused` and :func:`run_fit`).

    ``steps_per_execution`` is accepted for both engines; ``fused`` ignores it, as it
    already runs a whole epoch per compiled call.

    Raises:
        SpecError: ``engine`` is not an engine name, or ``steps_per_execution`` is not a
            positive integer.
    """
    if engine == "fused":
        # Checked all the same: a value fit would refuse must not pass because fused ran.
        check_steps_per_execution(kwargs.pop("steps_per_execution", None))
        return run_fused(model, x, y, **kwargs)
    if engine == "fit":
        return run_fit(model, x, y, **kwargs)
    raise SpecError(f"engine must be 'fused' or 'fit'; received engine={engine!r}")
