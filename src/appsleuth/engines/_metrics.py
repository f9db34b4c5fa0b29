"""Sparse categorical accuracy without ``argmax`` inside the fused engine's steps.

Keras' ``sparse_categorical_accuracy`` compares ``argmax(y_pred)`` with the label. On a
CPU, XLA computes ``argmax`` as a reduction over (value, index) pairs that it cannot
vectorise: for the baseline (batch 32, 18 classes) that alone took about 3.5 of the
~20 microseconds of a training step, some 12 % of an epoch. The same answer needs no
index: the row is correct exactly when no class before the label scores at least as
high as the label's score, and no class after it scores higher (``argmax`` returns the
first maximum), which is a handful of comparisons XLA fuses into one loop.

While the fused engine traces its programs, :func:`cheaper_accuracy` gives the model's
compiled ``SparseCategoricalAccuracy`` metrics (Keras' own function, ``"accuracy"`` with
a sparse loss) that function instead, and restores theirs when tracing ends. It returns
what Keras' returns for every input: ties, NaN (``argmax`` picks the first NaN), Keras'
ordering of -0.0 below 0.0 on CPU, and labels that are out of range or not whole
numbers (never correct). Other shapes and dtypes go to Keras' function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

__all__ = ["cheaper_accuracy", "sparse_categorical_accuracy"]

_FLOATS = ("float32", "float64")


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Keras' ``sparse_categorical_accuracy`` (1.0 per correct row), without ``argmax``.

    Args:
        y_true: Class indices, shape (n,) or (n, 1).
        y_pred: Scores, shape (n, classes), float32 or float64; other shapes and dtypes
            are passed to Keras' function.

    Returns:
        The per-row matches, shape (n,), in Keras' float type.
    """
    import jax
    import jax.numpy as jnp

    ops = keras.ops
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    shape = tuple(y_true.shape)
    if (
        dtype not in _FLOATS
        or len(y_pred.shape) != 2
        or shape not in ((y_pred.shape[0],), (y_pred.shape[0], 1))
    ):
        return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)
    # Keras compares float(argmax) with the label converted to y_pred's dtype.
    label = ops.convert_to_tensor(y_true, dtype=dtype)
    label = jnp.reshape(label, (-1, 1))
    if _on_cpu(y_pred):
        # As Keras' argmax on CPU: -0.0 ranks below 0.0 (its flush-to-zero fix).
        negative_zero = (y_pred == 0) & jnp.signbit(y_pred)
        y_pred = jnp.where(negative_zero, -jnp.finfo(y_pred.dtype).tiny, y_pred)
    classes = jax.lax.broadcasted_iota(y_pred.dtype, y_pred.shape, 1)
    is_label = classes == label
    # One class at most matches: adding zeros keeps its score exactly, NaN included (a
    # max would not: XLA's max may drop a NaN), and only -0.0 turns to 0.0, which
    # compares equal to it (on CPU there is no -0.0 left by now).
    score = jnp.sum(jnp.where(is_label, y_pred, 0), axis=1, keepdims=True)
    nan, score_nan = jnp.isnan(y_pred), jnp.isnan(score)
    # argmax returns the first maximum, and the first NaN if there is one.
    before = (classes < label) & ((y_pred >= score) | nan)
    after = (classes > label) & ((y_pred > score) | (nan & ~score_nan))
    correct = jnp.any(is_label, axis=1) & ~jnp.any(before | after, axis=1)
    return ops.cast(correct, keras.backend.floatx())


def _on_cpu(x: Any) -> bool:
    """Where Keras' argmax applies its CPU-only rule (a tracer: the default backend)."""
    import jax

    if not hasattr(x, "device"):
        return jax.default_backend() == "cpu"
    device = x.device
    return isinstance(device, jax.Device) and device.platform == "cpu"  # Else sharded.


def _leaf_metrics(metrics: list[Any]) -> Iterator[Any]:
    for metric in metrics:
        inner = getattr(metric, "metrics", None)
        if type(metric).__name__ in ("CompileMetrics", "MetricsList") and inner is not None:
            yield from _leaf_metrics(list(inner))
        else:
            yield metric


@contextlib.contextmanager
def cheaper_accuracy(model: keras.Model) -> Iterator[None]:
    """Within the block, the model's Keras sparse categorical accuracy metrics use
    :func:`sparse_categorical_accuracy`; their own function is restored on exit."""
    swapped = [
        metric
        for metric in _leaf_metrics(list(model.metrics))
        if getattr(metric, "_fn", None) is keras.metrics.sparse_categorical_accuracy
    ]
    for metric in swapped:
        metric._fn = sparse_categorical_accuracy
    try:
        yield
    finally:
        for metric in swapped:
            metric._fn = keras.metrics.sparse_categorical_accuracy
