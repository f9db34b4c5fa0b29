"""The ``fused`` engine: one compiled JAX program per epoch for small Keras models.

Small tabular networks (19 inputs, a hidden layer of 18, ~700 weights) spend almost all
of Keras ``fit``'s time in per-step framework work: Python iteration, callbacks and a
jit dispatch per batch. This engine drives the *same* compiled Keras model, optimizer,
loss and metrics through Keras' stateless JAX API (``model.train_step`` /
``model.test_step`` of the JAX trainer, which also carry the metrics and the dropout
seed state exactly as ``fit`` does) inside one XLA program per epoch:

1. shuffle the training rows on device, seeded by ``(seed, epoch)``;
2. ``lax.scan`` of ``train_step`` over every full batch, then one more ``train_step`` on
   the final partial batch, so an epoch makes ``ceil(n / batch_size)`` updates like
   ``fit``;
3. evaluate the validation rows in compiled chunks;
4. compute the epoch logs (``loss``, compiled metrics, ``val_*``) as ``fit`` reports them.

A softmax or sigmoid output trained with cross-entropy is traced as cross-entropy on its
logits, the way Keras computes it on TensorFlow (see :mod:`._logits`); the metrics and
the trained model still see probabilities.

Between epochs the state is written back into the model's variables, so callbacks
(EarlyStopping, ModelCheckpoint, CSVLogger, History, user callbacks) see and may change
the real weights; the next epoch reads them back. Batch-level callback hooks are not
called (there is no Python between batches): a warning says so when a callback has them.
"""

from __future__ import annotations

import collections
import json
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from appsleuth.engines._logits import LogitsPlan, logits_plan
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError, SpecError

__all__ = ["clear_fused_cache", "fused_unsupported_reason", "run_fused"]

# Validation rows per compiled evaluation step. The reported val_loss/val_accuracy are
# batch-size-weighted means, which for Keras' standard reductions do not depend on how
# the rows are cut into batches, so larger chunks than the training batch are exact and
# much faster than evaluating 32 rows at a time.
_VAL_CHUNK = 8192

# Compiled epoch programs kept for reuse by later models of the same architecture and
# data shapes (a sweep trains many of them); bounded so that memory stays flat.
_MAX_PROGRAMS = 16
_PROGRAMS: collections.OrderedDict[tuple[Any, ...], Callable[..., Any]] = collections.OrderedDict()

# Rounds of the Feistel network behind the on-device shuffle (see _permutation); even,
# and 4 is the classic count for a strong pseudo-random permutation (Luby-Rackoff).
_FEISTEL_ROUNDS = 4

# Softmax/sigmoid outputs with cross-entropy are trained from their logits (see _logits):
# measured 7-20 % faster per epoch for the baseline on CPU. False traces Keras' own steps.
_FROM_LOGITS = True

# lax.scan unroll factor: 2 to 4 measured no faster on CPU and compile slower.
_UNROLL = 1

# Callbacks whose batch-level hooks are harmless to skip (they act per epoch here).
_EPOCH_SAFE = (keras.callbacks.History, keras.callbacks.ProgbarLogger)
_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")


def fused_unsupported_reason(model: Any) -> str | None:
    """Say why the fused engine cannot train ``model``, or None when it can.

    Args:
        model: A compiled Keras model.

    Returns:
        None when the fused engine can serve; otherwise one sentence starting with
        "engine 'fused'" that names the obstacle (backend, compile state, layer, ...).
    """
    backend = keras.backend.backend()
    if backend != "jax":
        return f"engine 'fused' needs the JAX backend (KERAS_BACKEND={backend})"
    if not isinstance(model, keras.Model):
        return f"engine 'fused' trains keras.Model objects; received {type(model).__name__}"
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        return "engine 'fused' needs a compiled model; call model.compile(optimizer, loss) first"
    if model.run_eagerly:
        return "engine 'fused' cannot honour run_eagerly=True (a debugging setting of compile)"
    if model.jit_compile is False:
        return "engine 'fused' compiles with XLA but the model was compiled with jit_compile=False"
    if keras.distribution.distribution() is not None:
        return "engine 'fused' runs on one device; a keras.distribution is set"
    for layer in model._flatten_layers(include_self=False):
        if not getattr(layer, "supports_jit", True):
            return (
                f"engine 'fused' cannot compile layer {layer.name!r} "
                f"({type(layer).__name__}), which does not support XLA"
            )
    if model.built:
        try:
            n_in, n_out = len(model.inputs), len(model.outputs)
        except (AttributeError, ValueError):
            n_in = n_out = 1  # A subclassed model: its input count is known at fit time.
        if n_in != 1 or n_out != 1:
            return (
                "engine 'fused' supports models with one input and one output; "
                f"this one has {n_in} inputs and {n_out} outputs"
            )
    return None


def clear_fused_cache() -> None:
    """Forget the compiled epoch programs kept for reuse (frees their memory)."""
    _PROGRAMS.clear()


def run_fused(
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
) -> keras.callbacks.History:
    """Train a compiled model like ``model.fit``, with one compiled program per epoch.

    Args:
        model: A compiled Keras model (built, or buildable from ``x``).
        x: Inputs, shape (n, features...).
        y: Targets: class indices (n,) for a sparse categorical loss, (n,) or (n, 1)
            0/1 values for binary cross-entropy, or any shape the loss accepts.
        validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)``,
            evaluated at the end of every epoch. Default None.
        epochs: Number of epochs.
        batch_size: Rows per optimizer update; the last batch of an epoch may be smaller.
        seed: Seed of the shuffle, default 0 (epoch e uses the key (seed, e)).
        shuffle: Shuffle the training rows every epoch (on device, with a keyed
            pseudo-random permutation), default True; False keeps the row order.
        callbacks: Keras callbacks, called at train and epoch begin/end. Default None.
        class_weight: Class index -> loss weight. Default None.
        sample_weight: Per-row loss weights, shape (n,). Default None.
        verbose: 0 (default) is silent; 1, 2 or "auto" print one line per epoch.

    Returns:
        The :class:`keras.callbacks.History` (also ``model.history``).

    Raises:
        AppSleuthError: The model cannot be trained by this engine (the message says why).
        SpecError: A training argument is invalid.
        DataError: The arrays do not fit together.
    """
    reason = fused_unsupported_reason(model)
    if reason is not None:
        raise AppSleuthError(f"{reason}; train it with engine 'fit'")
    epochs = _positive_int("epochs", epochs, minimum=0)
    batch_size = _positive_int("batch_size", batch_size, minimum=1)
    seed = _positive_int("seed", seed, minimum=0) % 2**31  # An int32 inside the program.
    if verbose == "auto":
        verbose = 1

    train = _training_arrays(x, y, sample_weight, class_weight)
    val = _validation_arrays(validation_data, train)
    n = int(train[0].shape[0])

    # Creates the model, loss, metric and optimizer variables if fit has not yet.
    model._symbolic_build(data_batch=_pad3(tuple(a[:batch_size] for a in train)))
    reason = fused_unsupported_reason(model)  # Again: input and output counts are known now.
    if reason is not None:
        raise AppSleuthError(f"{reason}; train it with engine 'fit'")
    _warn_batch_hooks(callbacks)

    import jax

    device_train = tuple(jax.device_put(a) for a in train)
    device_val = None if val is None else tuple(jax.device_put(a) for a in val)
    model.reset_metrics()
    metrics_init = [v.value for v in model.metrics_variables]
    state = _read_state(model)
    args = (state, metrics_init, device_train, device_val, np.int32(seed), np.int32(0))
    program = _program(model, args, batch_size=batch_size, shuffle=bool(shuffle))

    n_batches = math.ceil(n / batch_size)
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=2 if verbose else 0,  # Keras' one-line-per-epoch display.
        epochs=epochs,
        steps=n_batches,
        model=model,
    )
    model.stop_training = False
    logs: dict[str, float] = {}
    finished = False
    callback_list.on_train_begin()
    try:
        for epoch in range(epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            # Read the state every epoch: a callback may have changed the weights or the
            # learning rate (EarlyStopping restore, LearningRateScheduler, ...).
            state = _read_state(model)
            out = program(
                state, metrics_init, device_train, device_val, np.int32(seed), np.int32(epoch)
            )
            new_state, train_metrics, train_logs, val_metrics, val_logs = out
            _write_state(model, new_state, val_metrics if val is not None else train_metrics)
            logs = {k: float(v) for k, v in jax.device_get(train_logs).items()}
            if val_logs is not None:
                logs.update({f"val_{k}": float(v) for k, v in jax.device_get(val_logs).items()})
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        finished = True
    finally:
        if epochs > 0 and isinstance(model.optimizer, keras.optimizers.Optimizer):
            # Like fit: e.g. swaps in the moving-average weights when use_ema=True.
            model.optimizer.finalize_variable_values(model.trainable_weights)
        if finished:
            callback_list.on_train_end(logs=logs)
    return next(cb for cb in callback_list.callbacks if isinstance(cb, keras.callbacks.History))


# --- data ---------------------------------------------------------------------------------


def _positive_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}; received {name}={value!r}")
    return int(value)


def _as_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{name} must be a numeric array; received dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) or array.dtype == bool:
        # Same input dtype as fit's data adapter produces (float64 -> floatx).
        return array.astype(keras.config.floatx(), copy=False)
    return array.astype(np.int32, copy=False)  # Class indices; JAX has no int64 by default.


def _training_arrays(
    x: Any, y: Any, sample_weight: Any, class_weight: dict[int, float] | None
) -> tuple[np.ndarray, ...]:
    xs = _as_array("x", x)
    ys = _as_array("y", y)
    if xs.ndim < 2:
        raise DataError(f"x must have shape (rows, features); received shape {xs.shape}")
    if len(xs) == 0:
        raise DataError("x has no rows; nothing to train on")
    if len(ys) != len(xs):
        raise DataError(f"x has {len(xs)} rows but y has {len(ys)}; they must match")
    if class_weight is not None and sample_weight is not None:
        raise SpecError(
            "class_weight and sample_weight cannot both be given (as in keras fit); "
            "multiply the class weights into sample_weight instead"
        )
    if class_weight is not None:
        sample_weight = _class_weights_to_sample_weights(ys, class_weight)
    if sample_weight is None:
        return xs, ys
    sw = _as_array("sample_weight", sample_weight).astype(keras.config.floatx(), copy=False)
    if sw.shape[0] != len(xs):
        raise DataError(f"x has {len(xs)} rows but sample_weight has {sw.shape[0]}")
    return xs, ys, sw


def _class_weights_to_sample_weights(y: np.ndarray, class_weight: dict[int, float]) -> np.ndarray:
    # The same class reading as Keras' class_weight_to_sample_weights (one-hot -> argmax,
    # (n, 1) -> squeeze, then round), vectorised.
    labels = y
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
    labels = np.round(labels).astype(np.int64)
    if not class_weight:
        return np.ones(len(labels), keras.config.floatx())
    top = max(int(labels.max()), max(int(k) for k in class_weight)) + 1
    table = np.ones(top, np.float64)
    for cls, weight in class_weight.items():
        if int(cls) >= 0:
            table[int(cls)] = float(weight)
    weights = np.where(labels >= 0, table[np.clip(labels, 0, None)], 1.0)
    return weights.astype(keras.config.floatx())


def _validation_arrays(
    validation_data: tuple[Any, ...] | None, train: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...] | None:
    if validation_data is None:
        return None
    if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
        raise SpecError(
            "validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight_val); "
            f"received {type(validation_data).__name__}"
        )
    vx = _as_array("validation x", validation_data[0])
    vy = _as_array("validation y", validation_data[1])
    if len(vx) == 0:
        return None
    if vx.shape[1:] != train[0].shape[1:]:
        raise DataError(f"validation x has row shape {vx.shape[1:]} but x has {train[0].shape[1:]}")
    if len(vy) != len(vx):
        raise DataError(f"validation x has {len(vx)} rows but validation y has {len(vy)}")
    if len(validation_data) == 3 and validation_data[2] is not None:
        vsw = _as_array("validation sample_weight", validation_data[2])
        return vx, vy, vsw.astype(keras.config.floatx(), copy=False)
    return vx, vy


def _pad3(data: tuple[Any, ...]) -> tuple[Any, ...]:
    return data if len(data) == 3 else (*data, None)


# --- model state --------------------------------------------------------------------------


def _read_state(model: keras.Model) -> tuple[list[Any], list[Any], list[Any]]:
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
    )


def _write_state(model: keras.Model, state: Any, metric_values: list[Any]) -> None:
    trainable, non_trainable, optimizer = state
    for variables, values in (
        (model.trainable_variables, trainable),
        (model.non_trainable_variables, non_trainable),
        (model.optimizer.variables, optimizer),
        (model.metrics_variables, metric_values),
    ):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def _warn_batch_hooks(callbacks: Sequence[Any] | None) -> None:
    skipped = []
    for cb in callbacks or []:
        if isinstance(cb, _EPOCH_SAFE) or _epoch_only(cb):
            continue
        base = keras.callbacks.Callback
        hooks = [h for h in _BATCH_HOOKS if getattr(type(cb), h) is not getattr(base, h)]
        if hooks:
            skipped.append(f"{type(cb).__name__} ({', '.join(hooks)})")
    if skipped:
        warnings.warn(
            "engine 'fused' runs a whole epoch in one compiled program, so batch-level "
            f"callback hooks are not called: {'; '.join(skipped)}. Use engine 'fit' if "
            "they matter.",
            AppSleuthWarning,
            stacklevel=3,
        )


def _epoch_only(cb: Any) -> bool:
    # Built-in callbacks whose batch hooks only act when configured per batch.
    if isinstance(cb, keras.callbacks.ModelCheckpoint | keras.callbacks.BackupAndRestore):
        return getattr(cb, "save_freq", "epoch") == "epoch"
    return isinstance(cb, keras.callbacks.EarlyStopping | keras.callbacks.CSVLogger)


# --- the compiled epoch program -----------------------------------------------------------


def _program(
    model: keras.Model, args: tuple[Any, ...], *, batch_size: int, shuffle: bool
) -> Callable[..., Any]:
    """The compiled epoch program for this model and data, from the cache if possible."""
    import jax

    signature = _signature(model)
    plan = logits_plan(model) if _FROM_LOGITS else None
    key = None
    if signature is not None:
        shapes = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), args[2:4])
        key = (signature, shapes, batch_size, shuffle, plan is not None, jax.default_backend())
        if key in _PROGRAMS:
            _PROGRAMS.move_to_end(key)
            return _PROGRAMS[key]
    n = int(args[2][0].shape[0])
    lowered = None
    if plan is not None:
        try:
            with plan.active():  # Traces the model: the plan applies while tracing only.
                fn = _epoch_function(model, n=n, batch_size=batch_size, shuffle=shuffle, plan=plan)
                lowered = jax.jit(fn).lower(*args)
        except Exception:
            # The plan relies on Keras internals that another Keras version may lack. It
            # only saves time, so trace Keras' own steps instead (which raise any real
            # error about the model or data themselves).
            lowered = None
    if lowered is None:
        fn = _epoch_function(model, n=n, batch_size=batch_size, shuffle=shuffle)
        lowered = jax.jit(fn).lower(*args)
    options = None
    if jax.default_backend() == "cpu":
        # Measured on the baseline model: LLVM level 2 compiles ~40 % faster than the
        # default level 3 and runs the step loop as fast or faster.
        options = {"xla_backend_optimization_level": 2}
    compiled = lowered.compile(options)
    if key is not None:
        _PROGRAMS[key] = compiled
        while len(_PROGRAMS) > _MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    return compiled


def _epoch_function(
    model: keras.Model, *, n: int, batch_size: int, shuffle: bool, plan: LogitsPlan | None = None
) -> Callable[..., Any]:
    import jax
    import jax.numpy as jnp

    n_full, rest = divmod(n, batch_size)
    metrics_variables = list(model.metrics_variables)

    def metric_logs(values: list[Any]) -> dict[str, Any]:
        mapping = list(zip(metrics_variables, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            return dict(model.get_metrics_result())

    train_step = model.train_step if plan is None else plan.train_step
    test_step = model.test_step if plan is None else plan.test_step

    def train_body(carry: Any, batch: Any) -> tuple[Any, None]:
        _, carry = train_step(carry, batch)
        return carry, None

    def test_body(carry: Any, batch: Any) -> tuple[Any, None]:
        _, carry = test_step(carry, batch)
        return carry, None

    def batched(data: tuple[Any, ...], size: int, count: int) -> tuple[Any, ...]:
        return tuple(a[: size * count].reshape((count, size, *a.shape[1:])) for a in data)

    def epoch(state, metrics_init, train, val, seed, epoch_index):
        trainable, non_trainable, optimizer = state
        if shuffle:
            key = jax.random.fold_in(jax.random.key(seed), epoch_index)
            order = _permutation(key, n)
            # One gather up front: measured faster than gathering 32 rows in every step;
            # mode='clip' skips the out-of-bounds fill, which doubles its cost.
            train = tuple(jnp.take(a, order, axis=0, mode="clip") for a in train)
        carry = (trainable, non_trainable, optimizer, metrics_init)
        if n_full:
            carry, _ = jax.lax.scan(
                train_body, carry, batched(train, batch_size, n_full), unroll=_UNROLL
            )
        if rest:
            # The final partial batch: its own (smaller) step, exactly as fit makes it.
            _, carry = train_step(carry, tuple(a[n_full * batch_size :] for a in train))
        trainable, non_trainable, optimizer, train_metrics = carry
        train_logs = metric_logs(train_metrics)
        val_metrics = val_logs = None
        if val is not None:
            n_val = val[0].shape[0]
            chunk = min(n_val, _VAL_CHUNK)
            v_full, v_rest = divmod(n_val, chunk)
            vcarry = (trainable, non_trainable, metrics_init)
            vcarry, _ = jax.lax.scan(test_body, vcarry, batched(val, chunk, v_full))
            if v_rest:
                _, vcarry = test_step(vcarry, tuple(a[v_full * chunk :] for a in val))
            val_metrics = vcarry[2]
            val_logs = metric_logs(val_metrics)
        new_state = (trainable, non_trainable, optimizer)
        return new_state, train_metrics, train_logs, val_metrics, val_logs

    return epoch


def _permutation(key: Any, n: int) -> Any:
    """A pseudo-random permutation of ``range(n)`` computed on device without sorting.

    ``jax.random.permutation`` sorts n random keys; XLA's CPU sort takes ~170 ms for
    218k rows, about as long as the training epoch itself. Instead each index, written
    as (row, column) of an a x b grid just larger than n, goes through a keyed Feistel
    network with modular rounds (a bijection of the grid), and again while it lands on
    one of the few cells >= n ("cycle walking"), which keeps it a bijection of [0, n).
    """
    import jax
    import jax.numpy as jnp

    a = math.isqrt(max(n - 1, 0)) + 1  # a * a >= n
    b = -(-n // a)  # a * b >= n, with fewer than a spare cells
    round_keys = jax.random.bits(key, (_FEISTEL_ROUNDS,), dtype=jnp.uint32)

    def mix(v: Any) -> Any:  # A 32-bit integer hash (xorshift-multiply).
        v = v ^ (v >> 16)
        v = v * jnp.uint32(0x7FEB352D)
        v = v ^ (v >> 15)
        v = v * jnp.uint32(0x846CA68B)
        return v ^ (v >> 16)

    def reduce(h: Any, m: int) -> Any:
        # h mod m without a division (slow on CPU): scale h / 2**32 to [0, m).
        scaled = jnp.floor(h.astype(jnp.float32) * jnp.float32(m / 2**32))
        return jnp.minimum(scaled.astype(jnp.uint32), jnp.uint32(m - 1))

    def encrypt(v: Any) -> Any:
        left, right = v // jnp.uint32(b), v % jnp.uint32(b)
        mod_left, mod_right = a, b
        for r in range(_FEISTEL_ROUNDS):  # An even count: ends with left in Z_a again.
            total = left + reduce(mix(right ^ round_keys[r]), mod_left)  # < 2 * mod_left
            total = jnp.where(total >= mod_left, total - jnp.uint32(mod_left), total)
            left, right = right, total
            mod_left, mod_right = mod_right, mod_left
        return left * jnp.uint32(b) + right

    def decrypt(v: Any) -> Any:  # The inverse of encrypt, round by round.
        left, right = v // jnp.uint32(b), v % jnp.uint32(b)
        for r in reversed(range(_FEISTEL_ROUNDS)):
            mod = a if r % 2 == 0 else b  # Round r added modulo this.
            f = reduce(mix(left ^ round_keys[r]), mod)
            left, right = jnp.where(right >= f, right - f, right + jnp.uint32(mod) - f), left
        return left * jnp.uint32(b) + right

    out = encrypt(jnp.arange(n, dtype=jnp.uint32))
    spare = a * b - n
    if spare:
        # Exactly the values n .. a*b-1 land outside [0, n), at the positions that decrypt
        # gives (found without searching all n). Each one walks on through encrypt until
        # it is inside; those whose position is outside [0, n) too are not walked (their
        # cycle may never come back inside) and are dropped.
        limit = jnp.uint32(n)
        values = jnp.arange(n, a * b, dtype=jnp.uint32)
        positions = decrypt(values)
        walkers = jax.lax.while_loop(
            lambda v: jnp.any(v >= limit),
            lambda v: jnp.where(v >= limit, encrypt(v), v),
            jnp.where(positions < limit, values, jnp.uint32(0)),
        )
        out = out.at[positions].set(walkers, mode="drop")
    return out.astype(jnp.int32)


# --- reuse across models ------------------------------------------------------------------


class _UncacheableError(Exception):
    """Raised inside _signature when a model part has no trustworthy description."""


def _signature(model: keras.Model) -> tuple[Any, ...] | None:
    """Everything the compiled program depends on besides variable values, or None.

    Two models with the same signature trace to the same program, so the second one can
    reuse the first one's compiled executable. Only Keras' own Sequential, layers,
    optimizers, losses and metrics are described (their configs are complete); anything
    custom returns None and is compiled afresh.
    """
    if type(model) is not keras.Sequential:
        return None
    try:
        layers = tuple(
            (*_keras_class(layer), layer.trainable, _config_text(layer, drop=("name",)))
            for layer in model.layers
        )
        optimizer = model.optimizer
        drop = ["name"]
        if isinstance(getattr(optimizer, "_learning_rate", None), keras.Variable):
            drop.append("learning_rate")  # A variable: part of the state, not the program.
        compile_config = getattr(model, "_compile_config", None)
        compiled = {
            k: _describe(v)
            for k, v in (compile_config.config if compile_config else {}).items()
            if k in ("loss", "loss_weights", "metrics", "weighted_metrics")
        }
        variables = tuple(
            tuple((tuple(v.shape), str(v.dtype)) for v in group)
            for group in (
                model.trainable_variables,
                model.non_trainable_variables,
                optimizer.variables,
                model.metrics_variables,
            )
        )
        return (
            layers,
            (*_keras_class(optimizer), _config_text(optimizer, drop=tuple(drop))),
            json.dumps(compiled, sort_keys=True),
            variables,
            keras.config.floatx(),
            str(model.dtype_policy.name),
        )
    except (_UncacheableError, TypeError, ValueError, NotImplementedError, AttributeError):
        return None


def _keras_class(obj: Any) -> tuple[str, str]:
    cls = type(obj)
    if not cls.__module__.startswith("keras."):
        raise _UncacheableError(cls.__qualname__)
    return cls.__module__, cls.__qualname__


def _config_text(obj: Any, *, drop: tuple[str, ...]) -> str:
    config = {k: v for k, v in obj.get_config().items() if k not in drop}
    return json.dumps(_describe(config), sort_keys=True)


def _describe(value: Any) -> Any:
    """A JSON-able description of a compile argument or config value."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, keras.Variable):
        raise _UncacheableError("variable in a config")
    if hasattr(value, "get_config"):
        module, name = _keras_class(value)
        return {"class": f"{module}.{name}", "config": _describe(value.get_config())}
    module = getattr(value, "__module__", "") or ""
    if callable(value) and module.startswith("keras."):
        return f"{module}.{getattr(value, '__qualname__', repr(value))}"
    raise _UncacheableError(repr(value))
