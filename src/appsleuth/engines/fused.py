"""The ``fused`` engine: one compiled JAX program per epoch for small Keras models.

Small tabular networks (19 inputs, a hidden layer of 18, ~700 weights) spend almost all
of Keras ``fit``'s time in per-step framework work: Python iteration, callbacks and a
jit dispatch per batch. This engine drives the *same* compiled Keras model, optimizer,
loss and metrics through Keras' stateless JAX API (``model.train_step`` /
``model.test_step`` of the JAX trainer, which also carry the metrics and the dropout
seed state exactly as ``fit`` does) inside compiled XLA programs, each epoch:

1. the shuffle program: shuffles the training rows on device, keyed by the seed and the
   optimizer's step count as the epoch starts (so a continued or resumed training draws
   new orders, as ``fit`` does), and cuts them into the epoch's batches;
2. the training program: ``lax.scan`` of ``train_step`` over every full batch, then one
   more ``train_step`` on the final partial batch, so an epoch makes
   ``ceil(n / batch_size)`` updates like ``fit``; it also computes the epoch logs
   (``loss`` and the compiled metrics) as ``fit`` reports them;
3. the validation program, run like ``fit``'s ``evaluate`` between the callbacks'
   ``on_test_begin`` and ``on_test_end`` (``SwapEMAWeights`` swaps the weights there),
   on the weights the model holds then.

With a second CPU core, the next epoch's shuffle and training are started ahead,
while this epoch trains and while it is validated and its callbacks run, and used only
if nothing changed in between (see :mod:`._ahead`): results are exactly those of working
in turn.

A softmax or sigmoid output trained with cross-entropy is traced as cross-entropy on its
logits, the way Keras computes it on TensorFlow (see :mod:`._logits`); the metrics and
the trained model still see probabilities.

On a CPU, a program whose matrix products are small (the baseline's) is compiled to
compute them on one thread without XLA's custom product fusions, which is faster for such
sizes (see ``_cpu_options``); the option is per program, not process-wide. The training
step's gradient products, which contract transposed operands, are computed on transposed
copies as plain products, which Eigen multiplies faster (see :mod:`._products`).

Between epochs the state is written back into the model's variables, so callbacks
(EarlyStopping, ModelCheckpoint, CSVLogger, History, user callbacks) see and may change
the real weights; the next epoch reads them back. Batch-level callback hooks are not
called (there is no Python between batches): a warning says so when a callback has them.
``TerminateOnNaN`` checks the epoch's loss instead, so training stops after the epoch in
which the loss became NaN rather than at that batch.
A stop requested in ``on_epoch_begin`` (or ``on_train_begin``) ends training before that
epoch (``fit`` would still make one step).
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import keras
import numpy as np

from appsleuth._fields import check_seed
from appsleuth._memory import release_programs_if_grown
from appsleuth.engines._ahead import WorkAhead
from appsleuth.engines._logits import LogitsPlan, compiled_losses, logits_plan
from appsleuth.engines._metrics import cheaper_accuracy
from appsleuth.engines._products import with_plain_products
from appsleuth.errors import AppSleuthError, DataError, SpecError, warn

__all__ = ["clear_fused_cache", "fused_unsupported_reason", "run_fused"]

# Validation rows per compiled evaluation step when that cannot change the results (see
# _chunk_exact): Keras reports val_loss as a batch-size-weighted mean of batch losses, and
# its built-in metrics sum over rows, so with per-row-mean losses the cut into batches
# does not matter and large chunks are much faster than 32 rows at a time. Otherwise
# validation runs in batches of batch_size, as fit's does.
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

# Keras' sparse categorical accuracy is traced without argmax (see _metrics): measured
# ~12 % faster per epoch for the baseline on CPU, same results. False traces Keras' own.
_CHEAPER_ACCURACY = True

# On a CPU, training steps compute their gradients' matrix products with transposed
# copies of the operands (see _products): measured 21 % less time for the baseline's
# training program on 2 cores (a median 61 against 78 ms per epoch, 15 interleaved
# rounds), bit-identical weights. False traces the products as JAX differentiates them.
_PLAIN_PRODUCTS = True

# Programs whose largest matrix product per step (rows x weights of the largest kernel)
# is at most this many multiply-adds compile with _ONE_THREAD_PRODUCTS on CPU (see
# _cpu_options): batch 32 with up to 362 x 362 weights, or validation chunks of 8192 rows
# with up to 512 weights. Measured on 2 cores, one thread was faster up to here.
_SMALL_PRODUCT = 2**22
_ONE_THREAD_PRODUCTS = {
    "xla_cpu_multi_thread_eigen": False,
    "xla_cpu_experimental_ynn_fusion_type": "",
}

# The next epoch's shuffle and training start ahead on another core (see _ahead):
# measured 14 % less time per epoch for the baseline on 2 cores (median 87 against
# 101 ms, 8 interleaved runs each). False runs everything in turn.
_WORK_AHEAD = True
_AHEAD_MAX_BYTES = 2**30

# The shuffle program (a gather of the training rows, no products) compiles without
# XLA's new fusion emitters: measured ~30 % faster for the baseline's 218,461 rows on
# 2 cores (and ~2x slower for the validation program, which keeps them).
_SHUFFLE_OPTIONS: list[dict[str, Any]] = [
    {"xla_backend_optimization_level": 2, "xla_cpu_use_fusion_emitters": False},
    {"xla_backend_optimization_level": 2},
]

# lax.scan unroll factor: 2 to 4 measured no faster on CPU and compile slower.
_UNROLL = 1

# Callbacks whose batch-level hooks are harmless to skip (they act per epoch here).
_EPOCH_SAFE = (keras.callbacks.History, keras.callbacks.ProgbarLogger)
_BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
)


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
    epochs: int = 1,
    batch_size: int | None = None,
    seed: int = 0,
    shuffle: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    class_weight: dict[int, float] | None = None,
    sample_weight: Any = None,
    initial_epoch: int = 0,
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
        epochs: Number of epochs. Defaults to 1, as in fit.
        batch_size: Rows per optimizer update; the last batch of an epoch may be smaller.
            Defaults to None: 32, as in fit.
        seed: Seed of the shuffle, 0 to 2**32 - 1, default 0. Each epoch's order is
            keyed by the seed and the optimizer's step count when the epoch starts: the
            same seed and starting state give the same orders, and training a model
            further draws new ones.
        shuffle: Shuffle the training rows every epoch (on device, with a keyed
            pseudo-random permutation), default True; False keeps the row order.
        callbacks: Keras callbacks, called at train and epoch begin/end. Default None.
        class_weight: Class index -> loss weight. Default None.
        sample_weight: Per-row loss weights, shape (n,). Default None.
        initial_epoch: The epoch to start at (as in fit), default 0; a
            ``BackupAndRestore`` callback resumes where its backup left off.
        verbose: 0 (default) is silent; 1, 2 or "auto" (= 1) show Keras' progress
            output once per epoch.

    Returns:
        The :class:`keras.callbacks.History` (also ``model.history``).

    Raises:
        AppSleuthError: The model cannot be trained by this engine (the message says why).
        SpecError: A training argument is invalid.
        DataError: The arrays do not fit together.
    """
    reason = fused_unsupported_reason(model)
    if reason is not None:
        if not isinstance(model, keras.Model) or not getattr(model, "compiled", False):
            raise AppSleuthError(reason)  # fit could not train it either.
        raise AppSleuthError(f"{reason}; train it with engine 'fit'")
    epochs = _positive_int("epochs", epochs, minimum=0)
    initial_epoch = _positive_int("initial_epoch", initial_epoch, minimum=0)
    batch_size = _positive_int("batch_size", 32 if batch_size is None else batch_size, minimum=1)
    seed = _positive_int("seed", seed, minimum=0)
    check_seed("seed", seed)  # A uint32 inside the program, as Keras' own seeds are.
    if verbose == "auto":
        verbose = 1
    callbacks = _callbacks_arg(callbacks)
    _refuse_batch_saving(callbacks)
    class_weight = _class_weight_arg(class_weight)

    train = _training_arrays(x, y, sample_weight, class_weight)
    val = _validation_arrays(validation_data, train)
    n = int(train[0].shape[0])

    # Creates the model, loss, metric and optimizer variables if fit has not yet.
    model._symbolic_build(data_batch=_pad3(tuple(a[:batch_size] for a in train)))
    reason = fused_unsupported_reason(model)  # Again: input and output counts are known now.
    if reason is not None:
        raise AppSleuthError(f"{reason}; train it with engine 'fit'")
    _check_class_indices(model, "y", train[1])
    if val is not None:
        _check_class_indices(model, "validation y", val[1])
    _warn_batch_hooks(callbacks)

    import jax

    # A loop training model after model of other shapes keeps every program JAX compiled.
    release_programs_if_grown(before_run=True)
    device_val = None if val is None else tuple(jax.device_put(a) for a in val)
    model.reset_metrics()
    metrics_init = [v.value for v in model.metrics_variables]
    state = _read_state(model)
    shuffle = bool(shuffle)
    # What the compiled programs depend on besides the data, worked out once.
    signature = _signature(model)
    plan = logits_plan(model) if _FROM_LOGITS else None
    if shuffle:
        device_train = tuple(jax.device_put(a) for a in train)
        shuffled = _compiled(
            model,
            ("shuffle",),  # The same for every model: data shapes and options key it.
            None,
            ("shuffle", batch_size),
            lambda _: _shuffle_function(n=n, batch_size=batch_size),
            (device_train, np.uint32(seed), np.uint32(0)),
            _SHUFFLE_OPTIONS,
        )
        in_order = None
    else:
        # The rows in order, cut into batches once, on the device as the only copy.
        in_order = jax.device_put(_in_order(train, batch_size))
    # What the training program is traced for: an epoch's batches, not yet computed.
    batch_shapes = tuple(
        tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in part)
        for part in _in_order(train, batch_size)
    )
    program = _compiled(
        model,
        signature,
        plan,
        ("train", batch_size),
        lambda p: _train_function(model, plan=p),
        (state, metrics_init, *batch_shapes),
        _cpu_options(model, batch_size),
    )
    evaluate = None
    if device_val is not None:
        chunk = _VAL_CHUNK if _chunk_exact(model) else batch_size
        evaluate = _compiled(
            model,
            signature,
            plan,
            ("evaluate", chunk),
            lambda p: _evaluate_function(model, chunk=chunk, plan=p),
            (state[:2], metrics_init, device_val),
            _cpu_options(model, chunk),
        )

    n_batches = math.ceil(n / batch_size)
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=n_batches,
        model=model,
    )
    model.stop_training = False
    logs: dict[str, float] = {}
    finished = False
    callback_list.on_train_begin()
    # As in fit: BackupAndRestore sets the epoch to resume from in on_train_begin.
    initial_epoch = getattr(model, "_initial_epoch", None) or initial_epoch
    # The shuffle is keyed by the optimizer's step count as an epoch starts, or by the
    # epoch index where the optimizer keeps none.
    steps = model.optimizer.iterations
    step_at = next((i for i, v in enumerate(model.optimizer.variables) if v is steps), None)

    def count_at(state: Any, epoch: int) -> int:
        count = epoch if step_at is None else int(np.asarray(state[2][step_at]))
        return count & 0xFFFFFFFF  # As a uint32 inside the program.

    def batches_for(count: int) -> Any:
        return in_order or ahead.shuffle(count, partial(shuffle_at, count))

    def shuffle_at(count: int) -> Any:
        return shuffled(device_train, np.uint32(seed), np.uint32(count))

    def start_shuffle_after(epoch: int, count: int) -> None:
        """Start the shuffle of the epoch after ``epoch`` (which begins at step ``count``)."""
        if in_order is None and epoch + 1 < epochs:
            following = (count + (1 if step_at is None else n_batches)) & 0xFFFFFFFF
            ahead.start_shuffle(following, partial(shuffle_at, following))

    ahead = WorkAhead(_work_ahead(train))
    try:
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            if model.stop_training:
                break  # Asked before the epoch; fit would make one step first.
            # Read the state every epoch: a callback may have changed the weights or the
            # learning rate (EarlyStopping restore, LearningRateScheduler, ...).
            state = _read_state(model)
            result = ahead.epoch(epoch, state)
            if result is None:
                count = count_at(state, epoch)
                batches = batches_for(count)
                start_shuffle_after(epoch, count)
                result = program(state, metrics_init, *batches)
            new_state, train_metrics, train_logs = result
            _write_state(model, new_state, train_metrics)
            if ahead.epochs_ahead and epoch + 1 < epochs:
                # The next epoch trains while this one is validated and its callbacks run.
                ahead_state = _read_state(model)
                count = count_at(ahead_state, epoch + 1)
                batches = batches_for(count)
                ahead.start_epoch(
                    epoch + 1, ahead_state, partial(program, ahead_state, metrics_init, *batches)
                )
                start_shuffle_after(epoch + 1, count)
            logs = {k: float(v) for k, v in jax.device_get(train_logs).items()}
            # Where fit's TerminateOnNaN would have stopped at a batch: it still validates
            # and ends the epoch, as here.
            _terminate_on_nan(callback_list.callbacks, epoch, logs, model)
            if evaluate is not None:
                val_logs = _validate(model, evaluate, callback_list, metrics_init, device_val)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        finished = True
    finally:
        ahead.close()
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


def _callbacks_arg(callbacks: Any) -> list[keras.callbacks.Callback]:
    """``callbacks`` as a list; one callback alone is taken as fit takes it."""
    if callbacks is None:
        return []
    if isinstance(callbacks, keras.callbacks.Callback):
        return [callbacks]
    if isinstance(callbacks, str) or not isinstance(callbacks, Sequence):
        raise SpecError(
            "callbacks must be a list of keras.callbacks.Callback objects; received "
            f"callbacks={callbacks!r}"
        )
    wrong = [c for c in callbacks if not isinstance(c, keras.callbacks.Callback)]
    if wrong:
        raise SpecError(
            "callbacks must be keras.callbacks.Callback objects (wrap a function in "
            f"keras.callbacks.LambdaCallback); received {wrong[0]!r}"
        )
    return list(callbacks)


def _refuse_batch_saving(callbacks: Sequence[Any]) -> None:
    """Refuse a ModelCheckpoint or BackupAndRestore that saves every N batches.

    Keras saves those only in their batch hook, which this engine never calls: they would
    save nothing at all, which a warning alone did not make plain.

    Raises:
        SpecError: One has an integer ``save_freq``.
    """
    for cb in callbacks:
        if not isinstance(cb, keras.callbacks.ModelCheckpoint | keras.callbacks.BackupAndRestore):
            continue
        freq = getattr(cb, "save_freq", "epoch")
        if freq != "epoch":
            # Keras' batch hook counts save_freq=False as 0: it saves after every batch.
            every = "after every batch" if isinstance(freq, bool) else f"every {freq} batches"
            raise SpecError(
                f"{type(cb).__name__}(save_freq={freq!r}) saves {every}, but "
                f"engine 'fused' runs a whole epoch in one compiled program and calls no "
                f"batch hooks, so it would save nothing; use save_freq='epoch', or train "
                f"with model.fit (engine 'fit')"
            )


def _class_weight_arg(class_weight: Any) -> dict[int, float] | None:
    """``class_weight`` checked: class indices (integers) to finite weights >= 0.

    fit silently ignores keys that are not numbers and fails on weights that are not,
    so a typo there would train unweighted without a word.
    """
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise SpecError(
            "class_weight must be a dict of class index -> weight, e.g. {0: 1.0, 1: 2.5}; "
            f"received {type(class_weight).__name__}"
        )
    checked = {}
    for cls, weight in class_weight.items():
        integral = isinstance(cls, int | np.integer) or (
            isinstance(cls, float | np.floating) and float(cls).is_integer()
        )
        if isinstance(cls, bool) or not integral:
            raise SpecError(
                f"class_weight keys must be class indices (integers 0, 1, ...); "
                f"received key {cls!r}"
            )
        number = isinstance(weight, int | float | np.integer | np.floating)
        if isinstance(weight, bool) or not number or not math.isfinite(weight) or weight < 0:
            raise SpecError(
                f"class_weight values must be finite numbers >= 0; received "
                f"class_weight[{cls!r}]={weight!r}"
            )
        checked[int(cls)] = float(weight)
    return checked


def _as_array(name: str, value: Any) -> np.ndarray:
    if value is None:
        raise DataError(f"{name} is missing (None); it must be an array with one row per sample")
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))  # {input name: array}, as fit takes it.
    elif isinstance(value, list | tuple) and len(value) == 1 and hasattr(value[0], "shape"):
        value = value[0]  # [array] for the one input (or output), as fit takes it.
    try:
        array = np.asarray(value)
    except ValueError as exc:  # Ragged nested lists.
        raise DataError(
            f"{name} must be a numeric array with one row per sample; received a "
            f"{type(value).__name__} whose rows do not form one ({exc})"
        ) from None
    if array.dtype == object and array.ndim == 0:
        # A generator, tf.data or keras PyDataset: fit takes those, this engine does not.
        raise DataError(
            f"{name} must be a numeric array (run_fused takes arrays; use engine 'fit' "
            f"for datasets and generators); received {type(value).__name__}"
        )
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        columns = getattr(value, "columns", None)
        if columns is not None and hasattr(value, "dtypes"):
            # A data frame: name the columns to encode or drop.
            from pandas.api.types import is_numeric_dtype

            wrong = [
                f"{c!s} ({t})"
                for c, t in zip(columns, value.dtypes, strict=True)
                if not is_numeric_dtype(t)
            ]
            if wrong:
                raise DataError(
                    f"{name} must be numeric; not numeric: column(s) {', '.join(wrong[:5])}"
                )
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
    if sw.ndim == 0 or sw.shape[0] != len(xs):
        raise DataError(
            f"x has {len(xs)} rows but sample_weight has shape {sw.shape}; "
            "it needs one weight per row"
        )
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
        # fit warns too (its input "ran out of data"): the epochs get no val_ logs, which
        # an EarlyStopping or ModelCheckpoint on val_loss would otherwise wait for in vain.
        warn("validation_data has no rows: training without validation (no val_ logs)")
        return None
    if vx.shape[1:] != train[0].shape[1:]:
        raise DataError(f"validation x has row shape {vx.shape[1:]} but x has {train[0].shape[1:]}")
    if len(vy) != len(vx):
        raise DataError(f"validation x has {len(vx)} rows but validation y has {len(vy)}")
    if len(validation_data) == 3 and validation_data[2] is not None:
        vsw = _as_array("validation sample_weight", validation_data[2])
        if vsw.ndim == 0 or len(vsw) != len(vx):
            raise DataError(
                f"validation x has {len(vx)} rows but validation sample_weight has "
                f"shape {vsw.shape}; it needs one weight per row"
            )
        return vx, vy, vsw.astype(keras.config.floatx(), copy=False)
    return vx, vy


def _check_class_indices(model: keras.Model, name: str, labels: np.ndarray) -> None:
    """Refuse labels outside the output for a (sparse categorical or binary) cross-entropy.

    On JAX such a label's one-hot row is all zeros, so its loss and accuracy silently
    count as 0 (Keras on TensorFlow raises instead); the check costs a min and a max.

    Raises:
        DataError: A label is negative or not below the number of output classes, or
            past 0..1 for a binary cross-entropy.
    """
    losses = compiled_losses(model)
    if not losses or len(losses) != 1 or labels.size == 0:
        return
    loss = losses[0]
    fn = getattr(loss, "fn", None)
    if fn is keras.losses.binary_crossentropy:
        # Labels past 0..1 (class indices of a multi-class task, say) give a loss that
        # can fall below 0 and train towards nonsense, on every backend.
        low, high = labels.min(), labels.max()
        if low < 0 or high > 1:
            raise DataError(
                f"{name} holds {low if low < 0 else high:g}, but binary_crossentropy needs "
                "labels between 0 and 1"
            )
        return
    if fn is not keras.losses.sparse_categorical_crossentropy:
        return
    try:
        n_classes = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, ValueError):
        return  # A subclassed model: its output width is not known here.
    if not isinstance(n_classes, int) or n_classes < 2:
        return
    ignored = (getattr(loss, "_fn_kwargs", None) or {}).get("ignore_class")
    kept = labels if ignored is None else labels[labels != ignored]
    if kept.size == 0:
        return
    low, high = kept.min(), kept.max()
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise DataError(
            f"{name} holds class index {bad:g}, but the model has {n_classes} output "
            f"classes: sparse_categorical_crossentropy needs labels 0 to {n_classes - 1}"
        )


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
        hooks = [
            h
            for h in _BATCH_HOOKS
            # Overridden in the class, or set on the instance (as LambdaCallback does).
            if getattr(type(cb), h) is not getattr(base, h) or h in vars(cb)
        ]
        if hooks:
            skipped.append(f"{type(cb).__name__} ({', '.join(hooks)})")
    if skipped:
        warn(
            "engine 'fused' runs a whole epoch in one compiled program, so batch-level "
            f"callback hooks are not called: {'; '.join(skipped)}. Use engine 'fit' if "
            "they matter."
        )


def _epoch_only(cb: Any) -> bool:
    # Built-in callbacks whose batch hooks only act when configured per batch, or that
    # this engine honours per epoch instead (TerminateOnNaN, see _terminate_on_nan).
    if _checks_nan(cb):
        return True
    if isinstance(cb, keras.callbacks.ModelCheckpoint | keras.callbacks.BackupAndRestore):
        return getattr(cb, "save_freq", "epoch") == "epoch"
    return isinstance(cb, keras.callbacks.EarlyStopping | keras.callbacks.CSVLogger)


def _checks_nan(cb: Any) -> bool:
    """Whether ``cb`` is Keras' own TerminateOnNaN (its batch hook not replaced)."""
    hook = keras.callbacks.TerminateOnNaN.on_batch_end
    return (
        isinstance(cb, keras.callbacks.TerminateOnNaN)
        and type(cb).on_batch_end is hook
        and "on_batch_end" not in vars(cb)
    )


def _terminate_on_nan(
    callbacks: Sequence[Any], epoch: int, logs: dict[str, float], model: keras.Model
) -> None:
    """Do what each TerminateOnNaN does at a batch, once per epoch.

    The epoch's loss is the mean of its batches' losses, so it is NaN or infinite exactly
    when fit's running loss was at some batch: training stops after the same epoch, the
    weights having trained to its end rather than to that batch.

    Raises:
        RuntimeError: The loss is NaN or infinite and a TerminateOnNaN has
            ``raise_error=True`` (as Keras raises).
    """
    loss = logs.get("loss")
    if loss is None or math.isfinite(loss):
        return
    for cb in callbacks:
        if not _checks_nan(cb):
            continue
        if getattr(cb, "raise_error", False):
            raise RuntimeError(
                f"NaN or Inf loss encountered in epoch {epoch + 1}. Loss value: {loss}. "
                "Terminating training immediately."
            )
        print(f"Epoch {epoch + 1}: Invalid loss, terminating training")
        model.stop_training = True


# --- the compiled epoch program -----------------------------------------------------------


def _compiled(
    model: keras.Model,
    signature: tuple[Any, ...] | None,
    plan: LogitsPlan | None,
    kind: tuple[Any, ...],
    make: Callable[[LogitsPlan | None], Callable[..., Any]],
    args: tuple[Any, ...],
    cpu_options: list[dict[str, Any]],
) -> Callable[..., Any]:
    """The compiled program ``make`` traces for ``args``, compiled on a CPU with the first
    of the ``cpu_options`` sets that XLA accepts.

    Programs are cached by the model's ``signature`` (None: not cached), ``kind``, the
    shapes and dtypes of the arrays in ``args`` and whether the logits ``plan`` applies;
    ``make(plan)`` is traced with the plan active, and ``make(None)`` if that fails;
    either with the cheaper accuracy.
    """
    import jax

    key = None
    if signature is not None:
        shapes = tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree.leaves(args))
        flags = (_CHEAPER_ACCURACY, _PLAIN_PRODUCTS)
        key = (signature, kind, shapes, plan is not None, *flags, jax.default_backend())
        if key in _PROGRAMS:
            _PROGRAMS.move_to_end(key)
            return _PROGRAMS[key]
    lowered = None
    accuracy = cheaper_accuracy(model) if _CHEAPER_ACCURACY else contextlib.nullcontext()
    with accuracy:  # Like the plan, it applies while tracing only.
        if plan is not None:
            try:
                with plan.active():  # Traces the model: the plan applies while tracing.
                    lowered = jax.jit(make(plan)).lower(*args)
            except Exception:
                # The plan relies on Keras internals that another Keras version may lack.
                # It only saves time, so trace Keras' own steps instead (which raise any
                # real error about the model or data themselves).
                lowered = None
        if lowered is None:
            lowered = jax.jit(make(None)).lower(*args)
    on_cpu = jax.default_backend() == "cpu"
    compiled = _compile(lowered, cpu_options if on_cpu else [])
    if key is not None:
        _PROGRAMS[key] = compiled
        while len(_PROGRAMS) > _MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    return compiled


def _work_ahead(train: tuple[Any, ...]) -> bool:
    """Whether to start the next epoch's shuffle and training ahead (see ``_ahead``).

    Only on a CPU with a second usable core: on one core that work would only take turns
    with the epoch, and a GPU runs one program after another on its stream anyway. Not
    for training data over ``_AHEAD_MAX_BYTES``, of which a second shuffled copy would
    exist meanwhile.
    """
    if not _WORK_AHEAD or sum(a.nbytes for a in train) > _AHEAD_MAX_BYTES:
        return False
    import jax

    from appsleuth.hardware import available_cores

    return jax.default_backend() == "cpu" and available_cores() >= 2


def _cpu_options(model: keras.Model, rows: int) -> list[dict[str, Any]]:
    """XLA's CPU compile options for a program whose steps take ``rows`` rows at a time.

    Returns:
        Option sets to try in turn, the fastest first (see :func:`_option_sets`).
    """
    largest = max((math.prod(v.shape) for v in model.trainable_variables), default=0)
    return _option_sets(rows * largest)


def _option_sets(product: int) -> list[dict[str, Any]]:
    """XLA's CPU option sets for a program whose largest product per step has ``product``
    multiply-adds, to try in turn, the fastest first."""
    # Measured on the baseline model: LLVM level 2 compiles ~40 % faster than the
    # default level 3 and runs the step loop as fast or faster.
    base: dict[str, Any] = {"xla_backend_optimization_level": 2}
    if product > _SMALL_PRODUCT:
        return [base]
    # Small matrix products cost more to share out between threads, or to hand to
    # XLA's custom product fusions, than to compute: measured on 2 cores, a
    # (32 x 19) @ (19 x 18) product takes ~1.2 us on one thread with Eigen against
    # ~2.4 us by default, and the baseline's step ~10 % less.
    return [base | _ONE_THREAD_PRODUCTS, base]


def _compile(lowered: Any, option_sets: list[dict[str, Any]]) -> Any:
    """``lowered`` compiled with the first of ``option_sets`` that XLA accepts."""
    for options in option_sets:
        try:
            return lowered.compile(options)
        except Exception:
            # The options are XLA debug options, which another jaxlib may rename or drop;
            # they only save time, and a real error in the program is raised below.
            continue
    return lowered.compile()


def _metric_logs(model: keras.Model, values: list[Any]) -> dict[str, Any]:
    """The model's metric results for these metric-variable values (inside a trace)."""
    mapping = list(zip(model.metrics_variables, values, strict=True))
    with keras.StatelessScope(state_mapping=mapping):
        return dict(model.get_metrics_result())


def _batched(data: tuple[Any, ...], size: int, count: int) -> tuple[Any, ...]:
    return tuple(a[: size * count].reshape((count, size, *a.shape[1:])) for a in data)


def _in_order(data: tuple[np.ndarray, ...], batch_size: int) -> tuple[tuple[Any, ...], ...]:
    """The training rows in order as an epoch's batches and final partial batch (views)."""
    n_full = len(data[0]) // batch_size
    return _batched(data, batch_size, n_full), tuple(a[n_full * batch_size :] for a in data)


def _shuffle_function(*, n: int, batch_size: int) -> Callable[..., Any]:
    """The program shuffling the training rows into an epoch's batches and final partial
    batch, by a key of the seed and ``count`` (the step count the epoch starts at, or the
    epoch index for an optimizer without one)."""
    import jax
    import jax.numpy as jnp

    n_full = n // batch_size
    cut = n_full * batch_size

    def shuffled(train, seed, count):
        key = jax.random.fold_in(jax.random.key(seed), count)
        order = _permutation(key, n)
        # One gather up front: measured faster than gathering 32 rows in every step;
        # mode='clip' skips the out-of-bounds fill, which doubles its cost. Gathering
        # straight into the batches and the final partial batch saves copying the
        # whole table once more to cut it (~5 ms an epoch for the baseline on CPU).
        full_order = order[:cut].reshape((n_full, batch_size))
        batches = tuple(jnp.take(a, full_order, axis=0, mode="clip") for a in train)
        last = tuple(jnp.take(a, order[cut:], axis=0, mode="clip") for a in train)
        return batches, last

    return shuffled


def _train_function(model: keras.Model, *, plan: LogitsPlan | None = None) -> Callable[..., Any]:
    """The program training one epoch on its ``batches`` and ``last`` (partial) batch."""
    import jax

    train_step = model.train_step if plan is None else plan.train_step
    if _PLAIN_PRODUCTS and jax.default_backend() == "cpu":
        train_step = with_plain_products(train_step)

    def train_body(carry: Any, batch: Any) -> tuple[Any, None]:
        _, carry = train_step(carry, batch)
        return carry, None

    def epoch(state, metrics_init, batches, last):
        trainable, non_trainable, optimizer_values = state
        carry = (trainable, non_trainable, optimizer_values, metrics_init)
        if batches[0].shape[0]:
            carry, _ = jax.lax.scan(train_body, carry, batches, unroll=_UNROLL)
        if last[0].shape[0]:
            # The final partial batch: its own (smaller) step, exactly as fit makes it.
            _, carry = train_step(carry, last)
        trainable, non_trainable, optimizer_values, train_metrics = carry
        new_state = (trainable, non_trainable, optimizer_values)
        return new_state, train_metrics, _metric_logs(model, train_metrics)

    return epoch


def _evaluate_function(
    model: keras.Model, *, chunk: int, plan: LogitsPlan | None = None
) -> Callable[..., Any]:
    import jax

    test_step = model.test_step if plan is None else plan.test_step

    def test_body(carry: Any, batch: Any) -> tuple[Any, None]:
        _, carry = test_step(carry, batch)
        return carry, None

    def evaluate(state, metrics_init, val):
        trainable, non_trainable = state
        n_val = val[0].shape[0]
        size = min(n_val, chunk)
        v_full, v_rest = divmod(n_val, size)
        carry = (trainable, non_trainable, metrics_init)
        carry, _ = jax.lax.scan(test_body, carry, _batched(val, size, v_full))
        if v_rest:
            _, carry = test_step(carry, tuple(a[v_full * size :] for a in val))
        return carry[2], _metric_logs(model, carry[2])

    return evaluate


def _validate(
    model: keras.Model,
    evaluate: Callable[..., Any],
    callback_list: keras.callbacks.CallbackList,
    metrics_init: list[Any],
    val: tuple[Any, ...],
) -> dict[str, float]:
    """Evaluate the validation rows like fit's evaluate: between the test hooks."""
    import jax

    callback_list.on_test_begin()
    # The weights the model holds now: a test hook may have swapped them (EMA).
    trainable, non_trainable, _ = _read_state(model)
    val_metrics, val_logs = evaluate((trainable, non_trainable), metrics_init, val)
    for variable, value in zip(model.metrics_variables, val_metrics, strict=True):
        variable.assign(value)
    logs = {k: float(v) for k, v in jax.device_get(val_logs).items()}
    callback_list.on_test_end(logs)
    return logs


def _chunk_exact(model: keras.Model) -> bool:
    """Whether validating in large chunks gives exactly what batch_size batches give.

    True when every compiled loss is one of Keras' own, reduced by the default
    ``sum_over_batch_size`` with no ignored class, the output has no mask (masks and
    ignored classes renormalise each batch's loss by its own count), and every compiled
    metric is one of Keras' built-in ones (they accumulate sums over rows).
    """
    losses = compiled_losses(model)
    if not losses:
        return False
    for loss in losses:
        if not _keras_owned(loss) or getattr(loss, "reduction", None) != "sum_over_batch_size":
            return False
        fn = getattr(loss, "fn", None)
        if fn is not None and not _keras_owned(fn):
            return False
        if (getattr(loss, "_fn_kwargs", None) or {}).get("ignore_class") is not None:
            return False
    if any(_makes_mask(layer) for layer in model._flatten_layers(include_self=False)):
        return False
    for metric in model.metrics:
        if metric is getattr(model, "_loss_tracker", None):
            continue
        if not _metric_exact(metric):
            return False
    return True


def _keras_owned(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", "")
    return str(module).startswith("keras.")


def _makes_mask(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.Masking) or getattr(layer, "mask_zero", False):
        return True
    # A layer of its own with compute_mask may create a mask too.
    own = type(layer).compute_mask is not keras.layers.Layer.compute_mask
    return own and not _keras_owned(type(layer))


def _metric_exact(metric: Any) -> bool:
    """Whether a compiled metric accumulates row by row (Keras' own metrics do)."""
    inner = getattr(metric, "metrics", None)
    if inner is not None and type(metric).__name__ in ("CompileMetrics", "MetricsList"):
        return all(_metric_exact(m) for m in inner)
    if not _keras_owned(type(metric)):
        return False
    fn = getattr(metric, "_fn", None)
    return fn is None or _keras_owned(fn)


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
        if any(isinstance(layer, keras.layers.Lambda) for layer in model.layers):
            return None  # Its config names the function but cannot vouch for its body.
        layers = tuple(
            (*_keras_class(layer), layer.trainable, _config_text(layer, drop=("name",)))
            for layer in model.layers
        )
        optimizer = model.optimizer
        drop = ["name"]
        if isinstance(getattr(optimizer, "_learning_rate", None), keras.Variable):
            drop.append("learning_rate")  # A variable: part of the state, not the program.
        decayed = ()
        if getattr(optimizer, "weight_decay", None) is not None:
            # exclude_from_weight_decay() is not in the config but shapes the program.
            decayed = tuple(bool(optimizer._use_weight_decay(v)) for v in model.trainable_variables)
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
            (*_keras_class(optimizer), _config_text(optimizer, drop=tuple(drop)), decayed),
            json.dumps(compiled, sort_keys=True),
            variables,
            keras.config.floatx(),
            str(model.dtype_policy.name),
        )
    except (_UncacheableError, TypeError, ValueError, NotImplementedError, AttributeError):
        return None


def _keras_class(obj: Any) -> tuple[str, str]:
    cls = type(obj)
    if not _keras_owned(cls):
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
        module = value.get("module")
        if "class_name" in value and isinstance(module, str) and not module.startswith("keras"):
            # A serialized function or object of the user's: named, but its body (or a
            # closure's values) is not part of the description.
            raise _UncacheableError(f"{module}.{value['class_name']}")
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
