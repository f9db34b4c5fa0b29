"""The ``fit`` engine: plain Keras ``Model.fit``, on any backend (the reference behaviour)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from appsleuth.errors import SpecError

__all__ = ["check_steps_per_execution", "run_fit"]


def check_steps_per_execution(steps_per_execution: Any) -> None:
    """Refuse a ``steps_per_execution`` that is not None or a positive integer.

    Raises:
        SpecError: It is not.
    """
    if steps_per_execution is None:
        return
    if (
        isinstance(steps_per_execution, bool)
        or not isinstance(steps_per_execution, int)
        or steps_per_execution < 1
    ):
        raise SpecError(
            "steps_per_execution must be a positive integer; "
            f"received steps_per_execution={steps_per_execution!r}"
        )


def run_fit(
    model: keras.Model,
    x: Any,
    y: Any,
    *,
    validation_data: tuple[Any, ...] | None = None,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    class_weight: dict[int, float] | None = None,
    sample_weight: Any = None,
    verbose: int | str = 0,
    steps_per_execution: int | None = None,
) -> keras.callbacks.History:
    """Train a compiled model with ``model.fit``.

    Args:
        model: A compiled Keras model.
        x, y: Training inputs and targets.
        validation_data: ``(x_val, y_val[, sample_weight_val])``, evaluated every epoch.
            Default None.
        epochs: Number of epochs.
        batch_size: Rows per optimizer update.
        seed: Seeds Python's, NumPy's and Keras' global random generators right before
            training, which ``fit`` draws its shuffle from; default 0.
        shuffle: Shuffle the training rows every epoch, default True.
        callbacks: Keras callbacks. Default None.
        class_weight: Class index -> loss weight. Default None.
        sample_weight: Per-row loss weights. Default None.
        verbose: Keras' verbosity, default 0 (silent).
        steps_per_execution: Batches per compiled call; default None keeps the value the
            model was compiled with.

    Returns:
        The :class:`keras.callbacks.History` that ``fit`` returns.

    Raises:
        SpecError: ``steps_per_execution`` is not a positive integer.
    """
    if steps_per_execution is not None:
        check_steps_per_execution(steps_per_execution)
        if steps_per_execution != model.steps_per_execution:
            model.steps_per_execution = steps_per_execution
            # The step functions are built for the old value; make fit rebuild them.
            model.train_function = model.test_function = model.predict_function = None
    keras.utils.set_random_seed(seed)
    return model.fit(
        x,
        y,
        validation_data=validation_data,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        callbacks=list(callbacks) if callbacks else None,
        class_weight=class_weight,
        sample_weight=sample_weight,
        verbose=verbose,
    )
