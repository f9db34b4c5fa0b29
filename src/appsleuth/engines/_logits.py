"""Cross-entropy from logits inside the fused engine's compiled steps.

A softmax (or sigmoid) output layer trained with a cross-entropy loss on probabilities
is, mathematically, cross-entropy on the layer's logits. Keras exploits this on the
TensorFlow backend (its ``softmax``/``sigmoid`` activations leave the logits on the
output tensor for the loss to use) but cannot on JAX, where the loss receives only the
probabilities: it renormalises them, clips them to ``[epsilon, 1 - epsilon]`` and takes
their logarithm, and the gradient flows back through all of that and the softmax. For a
small network those extra element-wise steps are a large share of each training step.

While the fused engine traces its epoch program, the plan from :func:`logits_plan`
switches the output layer's activation to linear and puts a copy of the loss computing
from logits into the compiled loss (both undone as soon as tracing ends). That copy
takes log-probabilities from the logits (``log_softmax``, ``log_sigmoid``) and clips them
to ``[log(epsilon), log(1 - epsilon)]``: the log of Keras' clipped probabilities, so a
row whose true class has a probability below ``epsilon`` (1e-7) gives the same capped
loss and no gradient, as in Keras' steps on JAX. Without that clip (plain
``from_logits=True``, as Keras on TensorFlow computes) such hopeless rows keep pulling
the weights, which cost 0.3-0.5 points of validation accuracy against ``fit`` on the
generated data. The probabilities (with the output's mask, if any) are still what the
metrics receive and what the trained model outputs. Only Keras' own Sequential,
full-precision Dense/Activation output layers and cross-entropy losses qualify; anything
else trains with Keras' ``train_step`` unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

try:  # Keras' tensor masks (not public API); without them no model qualifies.
    from keras.src.backend.common.masking import get_keras_mask, set_keras_mask
except ImportError:  # pragma: no cover - depends on the Keras version
    get_keras_mask = set_keras_mask = None

__all__ = ["LogitsPlan", "compiled_losses", "logits_plan"]

# Output layers must compute in full precision: in float16 or bfloat16 the probability
# path rounds, and under loss scaling overflows, differently from the logits path.
_FULL_PRECISION = ("float32", "float64")


def _clipped(log_p: Any, *, complement: bool = False) -> Any:
    """``log(clip(p, epsilon, 1 - epsilon))`` from ``log(p)``: Keras' clip, in log space
    (zero gradient outside it, as there); ``complement``: ``log(1 - clip(p, ...))`` from
    ``log(1 - p)``. The bounds are rounded in ``log_p``'s dtype, as Keras' clip is."""
    dtype = np.dtype(keras.backend.standardize_dtype(log_p.dtype))
    low = dtype.type(keras.backend.epsilon())
    high = dtype.type(1) - low
    if complement:
        low, high = dtype.type(1) - high, dtype.type(1) - low
    return keras.ops.clip(log_p, math.log(low), math.log(high))


def _sparse_categorical(y_true, y_pred, from_logits=True, ignore_class=None, axis=-1):
    """Keras' sparse categorical cross-entropy on probabilities, computed from logits."""
    ops = keras.ops
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[axis] == 1:
        y_true = ops.squeeze(y_true, axis=axis)
    valid = None
    if ignore_class is not None:  # Those rows count as masked out, as in Keras.
        valid = ops.not_equal(y_true, ops.cast(ignore_class, y_pred.dtype))
        y_true = ops.where(valid, y_true, 0)
        y_pred = ops.where(ops.expand_dims(valid, axis), y_pred, 0)
    target = ops.one_hot(ops.cast(y_true, "int32"), y_pred.shape[axis], axis=axis)
    loss = -ops.sum(target * _clipped(ops.log_softmax(y_pred, axis=axis)), axis=axis)
    if valid is not None:
        valid = ops.reshape(valid, ops.shape(loss))
        loss = ops.where(valid, loss, 0.0)
        set_keras_mask(loss, mask=valid)
    return loss


def _categorical(y_true, y_pred, from_logits=True, label_smoothing=0.0, axis=-1):
    """Keras' categorical cross-entropy on probabilities, computed from logits."""
    ops = keras.ops
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    if label_smoothing:
        classes = ops.cast(ops.shape(y_true)[-1], y_pred.dtype)
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / classes
    return -ops.sum(y_true * _clipped(ops.log_softmax(y_pred, axis=axis)), axis=axis)


def _binary(y_true, y_pred, from_logits=True, label_smoothing=0.0, axis=-1):
    """Keras' binary cross-entropy on probabilities, computed from logits."""
    ops = keras.ops
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    log_p = _clipped(ops.log_sigmoid(y_pred))
    log_q = _clipped(ops.log_sigmoid(-y_pred), complement=True)  # log(1 - p)
    return ops.mean(-(y_true * log_p + (1.0 - y_true) * log_q), axis=axis)


def _from_logits() -> dict[Any, Callable[..., Any]]:
    losses = keras.losses
    return {
        losses.sparse_categorical_crossentropy: _sparse_categorical,
        losses.categorical_crossentropy: _categorical,
        losses.binary_crossentropy: _binary,
    }


def _pairs() -> dict[Any, tuple[Any, ...]]:
    activations, losses = keras.activations, keras.losses
    return {
        activations.softmax: (
            losses.sparse_categorical_crossentropy,
            losses.categorical_crossentropy,
        ),
        activations.sigmoid: (losses.binary_crossentropy,),
    }


@dataclass(frozen=True, kw_only=True)
class LogitsPlan:
    """How to train one model's output layer and loss from logits.

    Attributes:
        model: The compiled model.
        layer: Its output layer (Dense or Activation), whose activation is switched off.
        activation: That layer's activation (softmax or sigmoid), applied to the logits
            to give the metrics their probabilities.
        loss: The compiled loss, replaced by a copy with ``from_logits=True`` while active.
    """

    model: keras.Model
    layer: keras.layers.Layer
    activation: Callable[..., Any]
    loss: keras.losses.Loss

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within the block, the model outputs logits and the compiled loss expects them.

        The compiled loss gets a copy of the loss object computing from logits; the
        user's object (which may also be one of the compiled metrics) is not changed.
        """
        entries = self.model._compile_loss._flat_losses
        original = entries[0]
        logits_loss = copy.copy(self.loss)
        logits_loss.fn = _from_logits()[self.loss.fn]
        logits_loss._fn_kwargs = {**self.loss._fn_kwargs, "from_logits": True}
        if isinstance(original, tuple):
            entries[0] = (original[0], logits_loss, *original[2:])
        else:
            entries[0] = logits_loss
        self.layer.activation = keras.activations.linear
        try:
            yield
        finally:
            self.layer.activation = self.activation
            entries[0] = original

    def train_step(self, state: Any, data: tuple[Any, ...]) -> Any:
        """Keras' JAX ``train_step``, with the metrics given probabilities (use in active)."""
        import jax

        model = self.model
        trainable, non_trainable, optimizer, metrics = state
        x, y, sample_weight = _unpack(data)
        grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
        (_, aux), grads = grad_fn(
            trainable, non_trainable, metrics, x, y, sample_weight,
            training=True, optimizer_variables=optimizer,
        )  # fmt: skip
        unscaled_loss, logits, non_trainable, metrics = aux
        trainable, optimizer = model.optimizer.stateless_apply(optimizer, grads, trainable)
        _, metrics = model._update_metrics_variables(
            metrics, unscaled_loss, x, y, self.probabilities(logits), sample_weight
        )
        return None, (trainable, non_trainable, optimizer, metrics)

    def test_step(self, state: Any, data: tuple[Any, ...]) -> Any:
        """Keras' JAX ``test_step``, with the metrics given probabilities (use in active)."""
        model = self.model
        trainable, non_trainable, metrics = state
        x, y, sample_weight = _unpack(data)
        _, aux = model.compute_loss_and_updates(
            trainable, non_trainable, metrics, x, y, sample_weight, training=False
        )
        unscaled_loss, logits, non_trainable, metrics = aux
        _, metrics = model._update_metrics_variables(
            metrics, unscaled_loss, x, y, self.probabilities(logits), sample_weight
        )
        return None, (trainable, non_trainable, metrics)

    def probabilities(self, logits: Any) -> Any:
        """The output layer's activation of ``logits``, with their Keras mask (if any)."""
        probabilities = self.activation(logits)
        mask = get_keras_mask(logits)
        if mask is not None:  # As the layer's own output would carry it to the metrics.
            set_keras_mask(probabilities, mask)
        return probabilities


def _unpack(data: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    return data[0], data[1], data[2] if len(data) > 2 else None


def logits_plan(model: keras.Model) -> LogitsPlan | None:
    """The plan to train ``model`` from logits, or None when it does not qualify.

    Qualifies: a compiled, built ``keras.Sequential`` whose last layer is a ``Dense``
    or an ``Activation`` computing in float32 (or float64), not quantized, with a
    softmax (last axis) or sigmoid activation and no activity regularizer,
    compiled with one loss, Keras' (sparse) categorical or binary cross-entropy on
    probabilities, and a Keras version with the JAX trainer methods used here.
    """
    if type(model) is not keras.Sequential or not model.built or not model.layers:
        return None
    for method in ("compute_loss_and_updates", "_update_metrics_variables"):
        if not callable(getattr(model, method, None)):
            return None
    layer = model.layers[-1]
    if type(layer) not in (keras.layers.Dense, keras.layers.Activation):
        return None
    if getattr(layer, "quantization_mode", None) is not None:
        return None
    if getattr(layer, "activity_regularizer", None) is not None:
        return None  # It penalises the layer's output: the probabilities, not the logits.
    if get_keras_mask is None or layer.compute_dtype not in _FULL_PRECISION:
        return None
    activation = getattr(layer, "activation", None)
    wanted = _pairs().get(activation)
    loss = _single_loss(model)
    if wanted is None or loss is None or getattr(loss, "fn", None) not in wanted:
        return None
    kwargs = getattr(loss, "_fn_kwargs", None)
    if not isinstance(kwargs, dict) or kwargs.get("from_logits", False) is not False:
        return None
    if kwargs.get("axis", -1) != -1:  # Softmax is over the last axis.
        return None
    return LogitsPlan(model=model, layer=layer, activation=activation, loss=loss)


def compiled_losses(model: keras.Model) -> list[Any] | None:
    """The loss objects of the model's compiled loss, or None when unreadable.

    Keras keeps them (not public API) in ``_compile_loss._flat_losses``, each bare or as
    the second item of a tuple, depending on the version.
    """
    compile_loss = getattr(model, "_compile_loss", None)
    entries = getattr(compile_loss, "_flat_losses", None)
    if not isinstance(entries, list):
        return None
    return [e[1] if isinstance(e, tuple) and len(e) > 1 else e for e in entries]


def _single_loss(model: keras.Model) -> keras.losses.Loss | None:
    losses = compiled_losses(model)
    if losses is None or len(losses) != 1:
        return None
    loss = losses[0]
    # Keras' function-wrapping loss (not public API): its fn and _fn_kwargs are used.
    if not isinstance(loss, keras.losses.Loss) or not hasattr(loss, "fn"):
        return None
    return loss
