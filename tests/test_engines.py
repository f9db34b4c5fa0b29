"""The training engines: fused matches fit (accuracy, updates, callbacks, weights).

Data are small slices of the embedded synthetic SherLock generator so that the whole file
runs in well under two minutes on a 2-core CPU; accuracy parity therefore uses ~13k
training rows and 10 epochs instead of the published 218k rows and 30 epochs.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import weakref

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
import pytest

from appsleuth.data.prepare import prepare_data
from appsleuth.data.synth import generate_sherlock
from appsleuth.engines import (
    clear_fused_cache,
    default_engine,
    fused_unsupported_reason,
    resolve_engine,
    run_engine,
    run_fit,
    run_fused,
)
from appsleuth.engines import fused as fused_module
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError, SpecError

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the fused engine needs KERAS_BACKEND=jax"
)

# Multiples of the batch size, so that fit compiles one step shape (keeps the file fast);
# uneven sizes are tested on their own below.
N_TRAIN = 12_800
N_VAL = 3_200


@pytest.fixture(scope="module")
def data():
    """Multi-class (18 apps) arrays: x_train, y_train, x_val, y_val."""
    prepared = prepare_data(generate_sherlock(17_000, seed=7))
    return (
        prepared.x_train[:N_TRAIN],
        prepared.y_train[:N_TRAIN],
        prepared.x_val[:N_VAL],
        prepared.y_val[:N_VAL],
    )


@pytest.fixture(scope="module")
def parity_data():
    """40,000 training and 10,000 validation rows: the engines differ only in their shuffle
    orders, whose effect on a seed's final accuracy shrinks with more steps per epoch."""
    prepared = prepare_data(generate_sherlock(60_000, seed=7))
    return (
        prepared.x_train[:40_000],
        prepared.y_train[:40_000],
        prepared.x_val[:10_000],
        prepared.y_val[:10_000],
    )


def _model(
    n_features: int = 19,
    n_classes: int = 18,
    *,
    hidden: int = 18,
    lr: float = 0.0003,
    seed: int = 0,
    dropout: float = 0.0,
    compile_: bool = True,
    **compile_kwargs,
) -> keras.Sequential:
    """The teaching baseline (Dense ReLU, RandomNormal(0, 0.05), softmax, Adam)."""
    keras.utils.set_random_seed(seed)
    layers = [
        keras.Input((n_features,)),
        keras.layers.Dense(
            hidden,
            activation="relu",
            kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05),
        ),
    ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    if n_classes == 2:
        layers.append(keras.layers.Dense(1, activation="sigmoid"))
        loss = "binary_crossentropy"
    else:
        layers.append(keras.layers.Dense(n_classes, activation="softmax"))
        loss = "sparse_categorical_crossentropy"
    model = keras.Sequential(layers)
    if compile_:
        model.compile(
            optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"], **compile_kwargs
        )
    return model


def _weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


class _Recorder(keras.callbacks.Callback):
    """Remembers the weights and logs seen at every epoch end."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []
        self.logs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        self.logs.append(dict(logs or {}))


# --- accuracy parity --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hidden", "lr"),
    [(18, 0.0003), (80, 0.0003), (18, 0.01)],
    ids=["baseline", "80-neurons", "lr-0.01"],
)
def test_fused_accuracy_matches_fit(parity_data, hidden, lr):
    x, y, xv, yv = parity_data
    finals = {"fit": [], "fused": []}
    for seed in range(3):
        for engine in finals:
            model = _model(hidden=hidden, lr=lr, seed=seed)
            kwargs = {"steps_per_execution": 32} if engine == "fit" else {}
            history = run_engine(
                engine, model, x, y, validation_data=(xv, yv), epochs=10, batch_size=32,
                seed=seed, **kwargs,
            )  # fmt: skip
            finals[engine].append(history.history["val_accuracy"][-1])
    gap = 100 * abs(np.mean(finals["fused"]) - np.mean(finals["fit"]))
    assert gap <= 0.5, f"fused {finals['fused']} vs fit {finals['fit']}: {gap:.2f} pp apart"


# --- determinism and updates ------------------------------------------------------------


def test_same_seed_gives_identical_results_and_dropout_advances(data):
    x, y, xv, yv = data
    runs = []
    for seed in (3, 3, 4):
        model = _model(seed=0, dropout=0.2)
        seed_state = next(v for v in model.non_trainable_variables if "seed" in v.path)
        start = np.asarray(seed_state.value).copy()
        history = run_fused(
            model, x, y, validation_data=(xv, yv), epochs=2, batch_size=32, seed=seed
        )
        runs.append((history.history, model.get_weights()))
        # Dropout drew fresh masks: Keras' seed generator state advanced, as in fit.
        assert not np.array_equal(start, np.asarray(seed_state.value))
    assert runs[0][0] == runs[1][0] and _weights_equal(runs[0][1], runs[1][1])
    assert not _weights_equal(runs[0][1], runs[2][1])  # Another shuffle, other weights.


def test_seeds_use_all_32_bits_and_defaults_are_fits(data):
    x, y, _, _ = data
    orders = []
    for seed in (0, 2**31):  # Were the same shuffle: the seed was taken modulo 2**31.
        model = _model(seed=0)
        run_fused(model, x[:640], y[:640], epochs=1, batch_size=32, seed=seed)
        orders.append(model.get_weights())
    assert not _weights_equal(*orders)
    model = _model(seed=0)
    history = run_fused(model, x[:100], y[:100])  # fit's defaults: 1 epoch of batches of 32
    assert len(history.history["loss"]) == 1 and int(model.optimizer.iterations) == 4
    with pytest.raises(SpecError, match=r"seed must be an integer from 0 to 4294967295; rec"):
        run_fused(model, x[:100], y[:100], seed=2**32)


def test_unshuffled_fused_equals_fit_step_for_step(data):
    x, y, xv, yv = data
    n, n_val = 1000, 500  # Partial last batches: 31 x 32 + 8 rows, and 15 x 32 + 20 rows.
    results = {}
    for engine in ("fit", "fused"):
        recorder = _Recorder()
        model = _model(seed=1)
        history = run_engine(
            engine, model, x[:n], y[:n], validation_data=(xv[:n_val], yv[:n_val]),
            epochs=2, batch_size=32, shuffle=False, callbacks=[recorder],
        )  # fmt: skip
        results[engine] = (history.history, model.get_weights(), recorder.logs)
        # One update per batch, the partial one included.
        assert int(model.optimizer.iterations) == 2 * math.ceil(n / 32) == 64
    assert set(results["fused"][2][0]) == set(results["fit"][2][0])
    assert set(results["fit"][2][0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key, values in results["fit"][0].items():
        np.testing.assert_allclose(results["fused"][0][key], values, rtol=1e-4, atol=1e-5)
    for a, b in zip(results["fused"][1], results["fit"][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- callbacks --------------------------------------------------------------------------


def test_early_stopping_stops_and_restores_best_weights(data):
    x, y, xv, yv = data
    recorder = _Recorder()
    # An improvement of 1.0 in accuracy is impossible: epoch 1 stays best, so training
    # stops after patience=1 more epoch and restores the epoch-1 weights.
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", min_delta=1.0, patience=1, restore_best_weights=True
    )
    model = _model()
    history = run_fused(
        model, x[:2000], y[:2000], validation_data=(xv, yv), epochs=10, batch_size=32,
        callbacks=[recorder, stopper],
    )  # fmt: skip
    assert history.epoch == [0, 1]
    assert _weights_equal(model.get_weights(), recorder.weights[0])
    assert not _weights_equal(recorder.weights[0], recorder.weights[1])


def test_checkpoint_and_csv_logger_write_files(data, tmp_path):
    x, y, xv, yv = data
    checkpoint = tmp_path / "model.keras"
    log = tmp_path / "history.csv"
    model = _model()
    run_fused(
        model, x[:2000], y[:2000], validation_data=(xv, yv), epochs=3, batch_size=32,
        callbacks=[
            keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss"),
            keras.callbacks.CSVLogger(str(log)),
        ],
    )  # fmt: skip
    assert checkpoint.exists()
    reloaded = keras.saving.load_model(checkpoint)
    assert _weights_equal(reloaded.get_weights(), model.get_weights())
    with log.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])


@pytest.mark.parametrize(
    ("kind", "freq", "every"),
    [
        ("checkpoint", 4, "every 4 batches"),
        ("backup", 4, "every 4 batches"),
        # Keras' batch hook takes False as 0, and so saves after every batch under fit.
        ("backup", False, "after every batch"),
    ],
)
def test_saving_every_n_batches_is_refused(data, tmp_path, kind, freq, every):
    # Keras saves those in its batch hook only, which the fused engine never calls: they
    # wrote no file at all, with no more than the general batch-hook warning.
    x, y, _, _ = data
    callback = (
        keras.callbacks.ModelCheckpoint(tmp_path / "m.keras", save_freq=freq)
        if kind == "checkpoint"
        else keras.callbacks.BackupAndRestore(tmp_path / "backup", save_freq=freq)
    )
    name = type(callback).__name__
    with pytest.raises(
        SpecError,
        match=rf"{name}\(save_freq={freq}\) saves {every}, but engine 'fused' runs a whole "
        r"epoch in one compiled program .* so it would save nothing; use save_freq='epoch'",
    ):
        run_fused(_model(), x[:64], y[:64], batch_size=8, callbacks=[callback])
    assert not list(tmp_path.iterdir())


def test_user_callback_sees_synced_weights(data):
    x, y, _, _ = data
    recorder = _Recorder()
    model = _model()
    history = run_fused(model, x[:1500], y[:1500], epochs=1, batch_size=32, callbacks=[recorder])
    assert _weights_equal(recorder.weights[0], model.get_weights())
    assert model.history is history and history.history["loss"] == [recorder.logs[0]["loss"]]


def test_callbacks_can_change_weights_between_epochs(data):
    x, y, _, _ = data

    class ZeroAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.set_weights([np.zeros_like(w) for w in self.model.get_weights()])

    recorder = _Recorder()
    model = _model(compile_=False)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    run_fused(
        model, x[:640], y[:640], epochs=2, batch_size=32, callbacks=[recorder, ZeroAtEpochEnd()]
    )
    # Epoch 2 started from zeros (not from epoch 1's weights): with zero weights a ReLU
    # layer passes no gradient, so plain SGD moved only the output bias.
    kernel, bias, out_kernel, out_bias = recorder.weights[1]
    assert not kernel.any() and not bias.any() and not out_kernel.any() and out_bias.any()


def test_learning_rate_scheduler_is_honoured(data):
    x, y, _, _ = data
    model = _model()
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.0)
    start = model.get_weights()
    run_fused(model, x[:640], y[:640], epochs=2, batch_size=32, callbacks=[schedule])
    assert _weights_equal(start, model.get_weights())


class _PerBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


class _PerTestBatch(keras.callbacks.Callback):
    def on_test_batch_end(self, batch, logs=None):
        pass


@pytest.mark.parametrize(
    ("callback", "hook"),
    [
        (_PerBatch(), "_PerBatch (on_train_batch_end)"),
        (_PerTestBatch(), "_PerTestBatch (on_test_batch_end)"),
        # Hooks set on the instance rather than the class.
        (keras.callbacks.LambdaCallback(on_train_batch_end=print), "LambdaCallback"),
    ],
    ids=["class", "test-batch", "instance"],
)
def test_batch_level_hooks_are_reported(callback, hook):
    with pytest.warns(AppSleuthWarning, match=f"not called: {re.escape(hook)}"):
        fused_module._warn_batch_hooks([callback])


def test_epoch_level_callbacks_raise_no_batch_warning(recwarn):
    fused_module._warn_batch_hooks(
        [keras.callbacks.LambdaCallback(on_epoch_end=print), keras.callbacks.EarlyStopping()]
    )
    assert not [w for w in recwarn if issubclass(w.category, AppSleuthWarning)]


@pytest.mark.parametrize(("verbose", "expected"), [(1, 1), ("auto", 1), (2, 2)])
def test_verbose_prints_one_line_per_epoch(data, capsys, verbose, expected):
    x, y, xv, yv = data
    history = run_fused(
        _model(), x[:640], y[:640], validation_data=(xv, yv), epochs=2, batch_size=32,
        verbose=verbose,
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and out.count("val_accuracy") == 2
    assert history.params["verbose"] == expected  # As fit tells its callbacks.


def test_a_stop_asked_in_on_train_begin_trains_no_epoch(data):
    x, y, _, _ = data
    stop = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: setattr(model, "stop_training", True)
    )
    model = _model()
    history = run_fused(model, x[:64], y[:64], epochs=3, callbacks=[stop])
    assert history.epoch == [] and int(model.optimizer.iterations) == 0


def test_a_stop_asked_before_an_epoch_skips_it(data):
    x, y, _, _ = data

    class StopBeforeSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.stop_training = epoch == 1

    model = _model()
    history = run_fused(
        model, x[:640], y[:640], epochs=3, batch_size=32, callbacks=[StopBeforeSecondEpoch()]
    )
    assert history.epoch == [0] and int(model.optimizer.iterations) == 20


def test_terminate_on_nan_stops_after_the_epoch_whose_loss_is_nan(data, recwarn):
    x, y, xv, yv = data
    x = x[:64].copy()
    x[3] = np.nan  # The first batch's loss is NaN.
    history = run_fused(
        _model(), x, y[:64], validation_data=(xv[:32], yv[:32]), epochs=3, batch_size=32,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )  # fmt: skip
    # As fit gives (stopped at the first batch): the epoch still validates and ends.
    assert history.epoch == [0] and math.isnan(history.history["loss"][0])
    assert "val_loss" in history.history
    assert not [w for w in recwarn if issubclass(w.category, AppSleuthWarning)]


def test_terminate_on_nan_can_raise(data):
    x, y, _, _ = data
    x = x[:64].copy()
    x[3] = np.nan
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered in epoch 1"):
        run_fused(
            _model(), x, y[:64], epochs=3, batch_size=32,
            callbacks=[keras.callbacks.TerminateOnNaN(raise_error=True)],
        )  # fmt: skip


def test_backup_and_restore_resumes_where_the_backup_left_off(data, tmp_path):
    x, y, _, _ = data
    x, y = x[:640], y[:640]

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("killed")

    uninterrupted = _model(seed=3)
    run_fused(uninterrupted, x, y, epochs=4, batch_size=32)
    with pytest.raises(RuntimeError, match="killed"):
        run_fused(
            _model(seed=3), x, y, epochs=4, batch_size=32,
            callbacks=[keras.callbacks.BackupAndRestore(tmp_path), Crash()],
        )  # fmt: skip
    resumed = _model(seed=3)
    history = run_fused(
        resumed, x, y, epochs=4, batch_size=32,
        callbacks=[keras.callbacks.BackupAndRestore(tmp_path)],
    )  # fmt: skip
    assert history.epoch == [2, 3]
    assert int(resumed.optimizer.iterations) == 4 * 20
    # The shuffle follows the optimizer's step count, so the resumed run is the same run.
    assert _weights_equal(resumed.get_weights(), uninterrupted.get_weights())


def test_training_further_draws_new_shuffles(data):
    x, y, _, _ = data
    x, y = x[:640], y[:640]
    at_once = _model(seed=4)
    run_fused(at_once, x, y, epochs=2, batch_size=32)
    in_two_calls = _model(seed=4)
    for _ in range(2):
        run_fused(in_two_calls, x, y, epochs=1, batch_size=32)
    # The second call shuffled afresh (not the first call's order again): the same run.
    assert _weights_equal(in_two_calls.get_weights(), at_once.get_weights())


def test_initial_epoch_numbers_the_epochs_like_fit(data):
    x, y, _, _ = data
    model = _model()
    history = run_fused(model, x[:640], y[:640], epochs=3, batch_size=32, initial_epoch=1)
    assert history.epoch == [1, 2] and int(model.optimizer.iterations) == 2 * 20
    with pytest.raises(SpecError, match="initial_epoch must be an integer >= 0; received"):
        run_fused(_model(), x, y, epochs=1, batch_size=32, initial_epoch=-1)


# --- validation as fit's evaluate -------------------------------------------------------


def _batch_mean_confidence(y_true, y_pred):
    # Reduced over the batch: its mean over batches depends on how rows are batched.
    return keras.ops.mean(keras.ops.max(y_pred, axis=-1))


def _validation_case(case: str, data) -> tuple[keras.Sequential, tuple[np.ndarray, ...]]:
    _, _, xv, yv = data
    val: tuple[np.ndarray, ...] = (xv[:300], yv[:300])  # 9 batches of 32 and one of 12.
    model = _model(seed=6, compile_=False)
    loss: object = "sparse_categorical_crossentropy"
    metrics: list[object] = ["accuracy"]
    if case == "sum":
        loss = keras.losses.SparseCategoricalCrossentropy(reduction="sum")
    elif case == "ignore-class":
        loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=3)
    elif case == "weighted-mean":
        loss = keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")
        val = (*val, np.linspace(0.1, 2.0, 300))
    elif case == "batch-mean-metric":
        metrics = [_batch_mean_confidence]
    elif case == "masked":
        model = keras.Sequential([keras.layers.Masking(0.0), *model.layers])
        xv = xv[:300].copy()
        xv[::7] = 0.0  # Every 7th row is masked out.
        val = (xv, yv[:300])
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss=loss, metrics=metrics)
    return model, val


@pytest.mark.parametrize(
    "case", ["plain", "sum", "ignore-class", "weighted-mean", "batch-mean-metric", "masked"]
)
def test_validation_logs_equal_fits(data, case):
    x, y, _, _ = data
    results = {}
    for engine in ("fit", "fused"):
        model, val = _validation_case(case, data)
        history = run_engine(
            engine, model, x[:640], y[:640], validation_data=val, epochs=2, batch_size=32,
            shuffle=False,
        )  # fmt: skip
        results[engine] = history.history
    # Large validation chunks only where they cannot change the numbers.
    assert fused_module._chunk_exact(model) == (case == "plain")
    assert results["fused"].keys() == results["fit"].keys()
    for key, values in results["fit"].items():
        np.testing.assert_allclose(results["fused"][key], values, rtol=2e-5, err_msg=key)


def test_validation_runs_between_the_test_hooks_on_the_weights_they_set(data):
    x, y, xv, yv = data
    results = {}
    for engine in ("fit", "fused"):
        calls: list[str] = []
        hooks = keras.callbacks.LambdaCallback(
            on_test_begin=lambda logs, calls=calls: calls.append("test_begin"),
            on_test_end=lambda logs, calls=calls: calls.append(f"test_end {sorted(logs)}"),
            on_epoch_end=lambda epoch, logs, calls=calls: calls.append("epoch_end"),
        )
        model = _model(seed=8, compile_=False)
        model.compile(
            optimizer=keras.optimizers.Adam(0.003, use_ema=True),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = run_engine(
            engine, model, x[:640], y[:640], validation_data=(xv[:320], yv[:320]), epochs=2,
            batch_size=32, shuffle=False,
            # Validates on the moving-average weights: swapped in on_test_begin.
            callbacks=[keras.callbacks.SwapEMAWeights(), hooks],
        )  # fmt: skip
        results[engine] = (history.history, calls)
    assert results["fused"][1] == results["fit"][1]
    assert results["fit"][1][:3] == ["test_begin", "test_end ['accuracy', 'loss']", "epoch_end"]
    for key, values in results["fit"][0].items():
        np.testing.assert_allclose(results["fused"][0][key], values, rtol=2e-5, err_msg=key)


class _StopAfterEpoch2(keras.callbacks.Callback):
    """Ends training after epoch 2: asked to stop (as EarlyStopping does), or Ctrl-C."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            if self.how == "interrupt":
                raise KeyboardInterrupt
            self.model.stop_training = True


def test_an_ema_model_ends_with_its_moving_averages_however_training_stops(data):
    # As fit (Keras 3: finalize_variable_values in its `finally`): also after an early
    # stop or a KeyboardInterrupt, the model holds the moving averages it was training.
    x, y, _, _ = data
    for how in ("stop", "interrupt"):
        # The model, optimizer and data of the test above: its compiled program is reused.
        model = _model(seed=8, compile_=False)
        model.compile(
            optimizer=keras.optimizers.Adam(0.003, use_ema=True),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        with contextlib.suppress(KeyboardInterrupt):
            run_fused(
                model, x[:640], y[:640], epochs=4, batch_size=32, shuffle=False,
                callbacks=[_StopAfterEpoch2(how)],
            )  # fmt: skip
        assert int(model.optimizer.iterations.numpy()) == 2 * 20, how
        averages = [v.numpy() for v in model.optimizer._model_variables_moving_average]
        assert all(np.allclose(w, a) for w, a in zip(model.get_weights(), averages, strict=True)), (
            how
        )


# --- weights and tasks ------------------------------------------------------------------


def test_class_weights_change_the_result(data):
    x, y, _, _ = data
    weights = []
    for class_weight in (None, {0: 20.0, 1: 0.05}):
        model = _model()
        run_fused(model, x[:2000], y[:2000], epochs=1, batch_size=32, class_weight=class_weight)
        weights.append(model.get_weights())
    assert not _weights_equal(*weights)


def test_unit_sample_weights_change_nothing_and_others_do(data):
    x, y, _, _ = data
    runs = []
    for sample_weight in (None, np.ones(2000), np.linspace(0.1, 3.0, 2000)):
        model = _model()
        history = run_fused(
            model, x[:2000], y[:2000], epochs=1, batch_size=32, sample_weight=sample_weight
        )
        runs.append((history.history["loss"][0], model.get_weights()))
    assert runs[1][0] == pytest.approx(runs[0][0], rel=1e-5)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not _weights_equal(runs[0][1], runs[2][1])


@pytest.mark.parametrize("shape", ["(n,)", "(n, 1)"])
def test_binary_task_with_sigmoid_and_binary_crossentropy(shape):
    prepared = prepare_data(generate_sherlock(6_000, seed=3), positive="Moriarty")
    y = prepared.y_train.astype("float32")
    yv = prepared.y_val.astype("float32")
    if shape == "(n, 1)":
        y, yv = y[:, None], yv[:, None]
    model = _model(prepared.x_train.shape[1], 2, lr=0.01)
    history = run_fused(
        model, prepared.x_train, y, validation_data=(prepared.x_val, yv), epochs=3, batch_size=32
    )
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    majority = max(yv.mean(), 1 - yv.mean())
    assert history.history["val_accuracy"][-1] > majority


# --- cross-entropy from logits ----------------------------------------------------------


def _binary_data(n: int = 1_500):
    prepared = prepare_data(generate_sherlock(6_000, seed=3), positive="Moriarty")
    return (
        prepared.x_train[:n],
        prepared.y_train[:n].astype("float32"),
        prepared.x_val[: n // 2],
        prepared.y_val[: n // 2].astype("float32"),
    )


def _probability_layer(model: keras.Model) -> tuple[object, dict]:
    loss = model._compile_loss._flat_losses[0][1]
    return model.layers[-1].activation, dict(loss._fn_kwargs)


@pytest.fixture
def plan_traces(monkeypatch):
    """Counts the steps traced through the logits plan (so a silent fallback is seen)."""
    from appsleuth.engines._logits import LogitsPlan

    calls = []
    for name in ("train_step", "test_step"):
        original = getattr(LogitsPlan, name)

        def counted(self, state, data, _original=original):
            calls.append(1)
            return _original(self, state, data)

        monkeypatch.setattr(LogitsPlan, name, counted)
    return calls


def _train_both_ways(build, x, y, monkeypatch, plan_traces, **kwargs):
    """Train ``build()`` with Keras' steps, then from logits; (history, weights, model) each."""
    runs = []
    for from_logits in (False, True):
        clear_fused_cache()  # A cached program would not be traced again.
        monkeypatch.setattr(fused_module, "_FROM_LOGITS", from_logits)
        plan_traces.clear()
        model = build()
        history = run_fused(model, x, y, batch_size=32, shuffle=False, **kwargs)
        assert bool(plan_traces) is from_logits, "the logits plan was not traced"
        runs.append((history.history, model.get_weights(), model))
    for key, values in runs[0][0].items():
        np.testing.assert_allclose(runs[1][0][key], values, rtol=1e-4, atol=1e-5, err_msg=key)
    for a, b in zip(runs[1][1], runs[0][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return runs


@pytest.mark.parametrize("classes", [18, 2], ids=["softmax", "sigmoid"])
def test_training_from_logits_matches_keras_steps_and_restores_the_model(
    data, classes, monkeypatch, plan_traces
):
    # The fused engine traces softmax/sigmoid + cross-entropy as cross-entropy on logits;
    # Keras' own train_step on probabilities must give the same epochs (up to rounding),
    # and the metrics (AUC needs probabilities, not logits) must see probabilities.
    if classes == 2:
        x, y, xv, yv = _binary_data()
    else:
        x, y, xv, yv = (a[:1000] for a in data)

    def build():
        model = _model(x.shape[1], classes, seed=4, lr=0.003, compile_=False)
        loss = "binary_crossentropy" if classes == 2 else "sparse_categorical_crossentropy"
        metrics = ["accuracy"] + ([keras.metrics.AUC(name="auc")] if classes == 2 else [])
        model.compile(optimizer=keras.optimizers.Adam(0.003), loss=loss, metrics=metrics)
        model._symbolic_build(data_batch=(x[:32], y[:32], None))
        return model

    before = _probability_layer(build())
    assert before[1].get("from_logits", False) is False
    runs = _train_both_ways(
        build, x, y, monkeypatch, plan_traces, epochs=2, validation_data=(xv, yv)
    )
    history, _, model = runs[1]
    assert _probability_layer(model) == before  # Activation and loss as they were.
    keys = {"loss", "accuracy", "val_loss", "val_accuracy"}
    if classes == 2:
        keys |= {"auc", "val_auc"}
    assert set(history) == keys
    probabilities = model.predict(xv[:50], verbose=0)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    if classes > 2:
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "case",
    ["cce-label-smoothing", "scce-sum", "bce-label-smoothing", "class-weight", "ignore-class"],
)
def test_loss_options_train_the_same_from_logits(case, monkeypatch, plan_traces):
    # Label smoothing, reductions, class weights, ignored classes and weight regularizers
    # act in Keras' loss either way; only the probabilities/logits input differs.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 6)).astype("float32")
    labels = rng.integers(0, 4, 320)
    units, activation, y, loss, kwargs = {
        "cce-label-smoothing": (
            4, "softmax", np.eye(4, dtype="float32")[labels],
            keras.losses.CategoricalCrossentropy(label_smoothing=0.1), {},
        ),
        "scce-sum": (
            4, "softmax", labels, keras.losses.SparseCategoricalCrossentropy(reduction="sum"), {},
        ),
        "bce-label-smoothing": (
            1, "sigmoid", (x[:, 0] > 0).astype("float32"),
            keras.losses.BinaryCrossentropy(label_smoothing=0.2), {},
        ),
        "class-weight": (
            4, "softmax", labels, "sparse_categorical_crossentropy",
            {"class_weight": {0: 2.0, 1: 0.5}},
        ),
        "ignore-class": (
            4, "softmax", labels, keras.losses.SparseCategoricalCrossentropy(ignore_class=2), {},
        ),
    }[case]  # fmt: skip

    def build():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", kernel_regularizer="l2"),
            keras.layers.Dense(units, activation=activation),
        ])  # fmt: skip
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"])
        return model

    _train_both_ways(build, x, y, monkeypatch, plan_traces, epochs=2, **kwargs)


def test_masked_outputs_give_the_metrics_their_mask(monkeypatch, plan_traces):
    # Padded time steps (Masking) are left out of the validation metrics either way.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6, 5)).astype("float32")
    for row, length in enumerate(rng.integers(1, 7, 256)):
        x[row, length:] = 0.0
    y = rng.integers(0, 4, (256, 6)).astype("int32")

    def build():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([
            keras.Input((6, 5)),
            keras.layers.Masking(0.0),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ])  # fmt: skip
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])  # fmt: skip
        return model

    runs = _train_both_ways(
        build, x, y, monkeypatch, plan_traces, epochs=1, validation_data=(x[:64], y[:64])
    )
    assert 0 < runs[1][0]["val_accuracy"][0] < 1


def test_a_loss_object_that_is_also_a_metric_is_left_unchanged(monkeypatch, plan_traces):
    x, y = np.random.default_rng(2).normal(size=(320, 6)).astype("float32"), np.arange(320) % 3
    shared = keras.losses.SparseCategoricalCrossentropy()

    def build():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=shared, metrics=[shared])
        return model

    runs = _train_both_ways(
        build, x, y, monkeypatch, plan_traces, epochs=1, validation_data=(x[:64], y[:64])
    )
    logs = runs[1][0]
    assert logs["val_sparse_categorical_crossentropy"] == pytest.approx(logs["val_loss"], rel=1e-5)
    assert shared._fn_kwargs.get("from_logits", False) is False  # The user's object.


def _plan_for(loss, output):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"), output])
    model.compile(optimizer="adam", loss=loss)
    sparse = "sparse" in (loss if isinstance(loss, str) else type(loss).__name__.lower())
    width = getattr(output, "units", 5)
    y = np.zeros(8, "int32") if sparse else np.zeros((8, width), "float32")
    model._symbolic_build(data_batch=(np.zeros((8, 4), "float32"), y, None))
    return fused_module.logits_plan(model)


@pytest.mark.parametrize(
    ("loss", "layer", "qualifies"),
    [
        ("sparse_categorical_crossentropy", keras.layers.Dense(3, activation="softmax"), True),
        ("categorical_crossentropy", keras.layers.Dense(3, activation="softmax"), True),
        (
            keras.losses.SparseCategoricalCrossentropy(ignore_class=0),
            keras.layers.Dense(3, activation="softmax"),
            True,
        ),
        ("binary_crossentropy", keras.layers.Dense(1, activation="sigmoid"), True),
        ("sparse_categorical_crossentropy", keras.layers.Activation("softmax"), True),
        (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            keras.layers.Dense(3, activation="softmax"),
            False,
        ),
        (
            keras.losses.CategoricalCrossentropy(axis=0),
            keras.layers.Dense(3, activation="softmax"),
            False,
        ),
        (
            "sparse_categorical_crossentropy",
            keras.layers.Dense(3, activation="softmax", dtype="mixed_float16"),
            False,
        ),
        (
            "sparse_categorical_crossentropy",
            keras.layers.Dense(3, activation="softmax", dtype="mixed_bfloat16"),
            False,
        ),
        ("sparse_categorical_crossentropy", keras.layers.Dense(3, activation="relu"), False),
        ("mse", keras.layers.Dense(3, activation="softmax"), False),
        ("binary_crossentropy", keras.layers.Dense(1, activation="softmax"), False),
        ("sparse_categorical_crossentropy", keras.layers.Softmax(), False),
        (
            "sparse_categorical_crossentropy",
            keras.layers.Dense(3, activation="softmax", activity_regularizer="l2"),
            False,
        ),
    ],
    ids=[
        "sparse", "categorical", "ignore-class", "binary", "activation-layer",
        "already-logits", "other-axis", "float16-output", "bfloat16-output",
        "relu-output", "mse", "softmax-with-bce", "softmax-layer",
        "activity-regularizer",
    ],
)  # fmt: skip
def test_logits_plan_only_for_probability_outputs_with_cross_entropy(loss, layer, qualifies):
    assert (_plan_for(loss, layer) is not None) is qualifies


def test_a_plan_that_fails_to_trace_falls_back_to_keras_steps(data, monkeypatch):
    # E.g. another Keras version without the trainer internals the plan calls.
    from appsleuth.engines._logits import LogitsPlan

    x, y, xv, yv = (a[:640] for a in data)
    results = []
    try:
        for broken in (False, True):
            clear_fused_cache()
            monkeypatch.setattr(fused_module, "_FROM_LOGITS", broken)
            if broken:

                def missing(self, state, data):
                    raise AttributeError("'Sequential' object has no attribute '_update_metrics'")

                monkeypatch.setattr(LogitsPlan, "train_step", missing)
            model = _model(seed=5)
            history = run_fused(model, x, y, validation_data=(xv, yv), epochs=2, batch_size=32)
            results.append((history.history, model.get_weights()))
            assert model.layers[-1].activation is keras.activations.softmax
    finally:
        # The fallback program is cached under the plan's key: a later test of the same
        # model and shapes in this process would test Keras' steps instead of the plan.
        clear_fused_cache()
    # Training fell back to Keras' steps: the same weights, bit for bit. Validation (its own
    # program, whose plan still traced) computes val_loss from logits: equal up to rounding.
    assert _weights_equal(results[0][1], results[1][1])
    for key, values in results[0][0].items():
        np.testing.assert_allclose(results[1][0][key], values, rtol=1e-6, err_msg=key)


def test_logits_plan_is_undone_when_tracing_fails():
    model = _model(compile_=False)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model._symbolic_build(data_batch=(np.zeros((8, 19), "float32"), np.zeros(8, "int32"), None))
    plan = fused_module.logits_plan(model)
    seen = []

    def failing_trace():
        with plan.active():
            compiled = model._compile_loss._flat_losses[0][1]
            seen.append((model.layers[-1].activation, compiled._fn_kwargs["from_logits"]))
            raise RuntimeError("trace failed")

    with pytest.raises(RuntimeError, match="trace failed"):
        failing_trace()
    assert seen == [(keras.activations.linear, True)]
    assert model.layers[-1].activation is keras.activations.softmax
    assert model._compile_loss._flat_losses[0][1] is plan.loss
    assert "from_logits" not in plan.loss._fn_kwargs


# --- engine choice and fallback ---------------------------------------------------------


def test_default_engine_is_fused_on_jax(monkeypatch):
    assert default_engine() == "fused"
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    assert default_engine() == "fit"


def test_resolve_engine_falls_back_with_a_message(monkeypatch):
    model = _model()
    assert resolve_engine(None, model) == ("fused", None)
    assert resolve_engine("fused", model) == ("fused", None)
    assert resolve_engine("fit", model) == ("fit", None)

    engine, message = resolve_engine("fused", _model(compile_=False))
    assert engine == "fit" and "compile" in message and message.endswith("using 'fit'")
    engine, message = resolve_engine(None, _model(run_eagerly=True))
    assert engine == "fit" and "run_eagerly" in message

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    assert resolve_engine("fused", model) == (
        "fit",
        "engine 'fused' needs the JAX backend (KERAS_BACKEND=torch); using 'fit'",
    )
    assert resolve_engine(None, model) == ("fit", None)  # The default there: no fallback.


def test_unknown_engine_names_are_spec_errors(data):
    x, y, _, _ = data
    with pytest.raises(SpecError, match=r"engine must be 'fused' or 'fit'; received engine='fast'"):
        resolve_engine("fast", _model())
    with pytest.raises(SpecError, match=r"received engine='FUSED'"):
        run_engine("FUSED", _model(), x, y, epochs=1, batch_size=32)


def test_unsupported_models_are_explained():
    assert fused_unsupported_reason(_model()) is None
    assert "compiled" in fused_unsupported_reason(_model(compile_=False))
    assert "jit_compile=False" in fused_unsupported_reason(_model(jit_compile=False))
    inputs = [keras.Input((3,)), keras.Input((2,))]
    two_inputs = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Concatenate()(inputs)))
    two_inputs.compile(optimizer="adam", loss="mse")
    assert "one input" in fused_unsupported_reason(two_inputs)
    with pytest.raises(AppSleuthError, match="engine 'fit'"):
        run_fused(_model(jit_compile=False), np.zeros((4, 19)), np.zeros(4))
    # fit needs a compiled Keras model too: no advice to use it instead.
    with pytest.raises(AppSleuthError, match=r"call model.compile\(optimizer, loss\) first$"):
        run_fused(_model(compile_=False), np.zeros((4, 19)), np.zeros(4), epochs=1, batch_size=2)
    with pytest.raises(AppSleuthError, match=r"trains keras.Model objects; received str$"):
        run_fused("model", np.zeros((4, 19)), np.zeros(4))


def test_invalid_arguments_are_reported(data):
    x, y, _, _ = data
    with pytest.raises(SpecError, match="epochs"):
        run_fused(_model(), x, y, epochs=-1, batch_size=32)
    with pytest.raises(SpecError, match="batch_size"):
        run_fused(_model(), x, y, epochs=1, batch_size=0)
    with pytest.raises(DataError, match="rows"):
        run_fused(_model(), x, y[:-1], epochs=1, batch_size=32)
    with pytest.raises(SpecError, match="class_weight and sample_weight"):
        run_fused(
            _model(), x, y, epochs=1, batch_size=32, class_weight={0: 2.0}, sample_weight=y * 0
        )
    with pytest.raises(DataError, match=r"sample_weight has shape \(\); it needs one weight"):
        run_fused(_model(), x, y, epochs=1, batch_size=32, sample_weight=1.0)
    with pytest.raises(DataError, match=r"validation sample_weight has shape \(5,\)"):
        run_fused(
            _model(), x, y, epochs=1, batch_size=32,
            validation_data=(x[:10], y[:10], np.ones(5)),
        )  # fmt: skip
    with pytest.raises(SpecError, match="steps_per_execution"):
        run_fit(_model(), x, y, epochs=1, batch_size=32, steps_per_execution=0)


@pytest.mark.parametrize("engine", ["fit", "fused"])
def test_both_engines_refuse_an_invalid_steps_per_execution(engine):
    # fused ignores the value, but one that fit refuses must not pass because fused ran.
    with pytest.raises(SpecError, match=r"positive integer; received steps_per_execution=0"):
        run_engine(engine, _model(), np.zeros((4, 19)), np.zeros(4), epochs=1, batch_size=2,
                   steps_per_execution=0)  # fmt: skip


@pytest.mark.parametrize(
    ("class_weight", "message"),
    [
        ([1.0, 2.0], r"class_weight must be a dict of class index -> weight.*received list"),
        ({"0": 2.0}, r"class_weight keys must be class indices .*received key '0'"),
        ({0.5: 2.0}, r"received key 0.5"),
        ({0: None}, r"class_weight values must be finite numbers >= 0; .*\[0\]=None"),
        ({0: "2"}, r"class_weight\[0\]='2'"),
        ({1: -1.0}, r"class_weight\[1\]=-1.0"),
        ({1: float("nan")}, r"class_weight\[1\]=nan"),
    ],
)
def test_invalid_class_weights_are_reported(class_weight, message):
    # fit would train unweighted on a key '0' and fail on a None weight with a TypeError.
    with pytest.raises(SpecError, match=message):
        run_fused(_model(), np.zeros((4, 19)), np.zeros(4), class_weight=class_weight)


def test_class_weight_keys_may_be_numpy_or_integral_floats():
    for weights in ({np.int64(0): 2, np.int64(1): 0.5}, {0.0: np.float32(2), 1.0: 0.5}):
        assert fused_module._class_weight_arg(weights) == {0: 2.0, 1: 0.5}


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        (print, r"callbacks must be a list of keras.callbacks.Callback objects; .*print"),
        ([keras.callbacks.History(), "early"], r"LambdaCallback\); received 'early'"),
    ],
)
def test_invalid_callbacks_are_reported(callbacks, message):
    with pytest.raises(SpecError, match=message):
        run_fused(_model(), np.zeros((4, 19)), np.zeros(4), callbacks=callbacks)


def test_one_callback_alone_is_taken_as_fit_takes_it(data):
    x, y, _, _ = data
    recorder = _Recorder()
    run_fused(_model(), x[:64], y[:64], epochs=2, callbacks=recorder)
    assert len(recorder.logs) == 2


@pytest.mark.parametrize(
    ("labels", "val_labels", "message"),
    [
        ([0, 1, 18, 2], [0, 1], r"^y holds class index 18, but the model has 18 output classes"),
        ([0, 1, -1, 2], [0, 1], r"^y holds class index -1, .* needs labels 0 to 17$"),
        ([0, 1, 2, 3], [0, 20], r"^validation y holds class index 20"),
    ],
)
def test_class_indices_outside_the_output_are_reported(labels, val_labels, message):
    # On JAX, fit counts such a row's loss as 0 without a word.
    x = np.zeros((4, 19), "float32")
    with pytest.raises(DataError, match=message):
        run_fused(_model(), x, np.array(labels), validation_data=(x[:2], np.array(val_labels)))


@pytest.mark.parametrize(("labels", "shown"), [([0, 1, 5, 0], "5"), ([0, -1, 1, 0], "-1")])
def test_binary_labels_outside_0_to_1_are_reported(labels, shown):
    x = np.zeros((4, 19), "float32")
    message = f"^y holds {shown}, but binary_crossentropy needs labels between 0 and 1$"
    with pytest.raises(DataError, match=message):
        run_fused(_model(n_classes=2), x, np.array(labels))


def test_an_ignored_class_index_is_not_reported():
    model = _model(compile_=False)
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=-1)
    model.compile(optimizer="adam", loss=loss)
    history = run_fused(model, np.zeros((4, 19)), np.array([0, -1, 3, 17]))
    assert history.epoch == [0]


def test_empty_validation_data_is_warned_about():
    x = np.zeros((4, 19), "float32")
    with pytest.warns(AppSleuthWarning, match="validation_data has no rows"):
        history = run_fused(_model(), x, np.zeros(4), validation_data=(x[:0], np.zeros(0)))
    assert list(history.history) == ["accuracy", "loss"]


@pytest.mark.parametrize("wrap", [lambda a: [a], lambda a: (a,), lambda a: {"features": a}])
def test_the_one_input_may_come_wrapped_as_fit_takes_it(data, wrap):
    x, y, xv, yv = data
    x, y, xv, yv = x[:64], y[:64], xv[:32], yv[:32]
    expected = run_fused(_model(), x, y, validation_data=(xv, yv)).history
    wrapped = run_fused(_model(), wrap(x), [y], validation_data=(wrap(xv), yv)).history
    assert wrapped == expected


def _batches():
    yield np.zeros((2, 19)), np.zeros(2)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            _batches(),
            r"^x must be a numeric array \(run_fused takes arrays; use engine 'fit' "
            r"for datasets and generators\); received generator$",
        ),
        (
            [[0.0] * 19, [0.0] * 18],
            r"^x must be a numeric array with one row per sample; "
            r"received a list whose rows do not form one",
        ),
    ],
    ids=["generator", "ragged"],
)
def test_inputs_that_are_not_arrays_are_reported(x, message):
    with pytest.raises(DataError, match=message):
        run_fused(_model(), x, np.zeros(2))


def test_non_numeric_data_frame_columns_are_named():
    import pandas as pd

    x = pd.DataFrame({"cpu": [0.1, 0.2], "app": ["a", "b"], "state": ["R", "S"]})
    with pytest.raises(DataError, match=r"^x must be numeric; not numeric: column\(s\) app \("):
        run_fused(_model(n_features=3), x, np.zeros(2))


def test_missing_targets_are_reported():
    with pytest.raises(DataError, match=r"^y is missing \(None\); it must be an array"):
        run_fused(_model(), np.zeros((4, 19)), None)


# --- internals: shuffle and program reuse -----------------------------------------------


def test_on_device_shuffle_is_a_seeded_permutation():
    import jax

    permutation = jax.jit(fused_module._permutation, static_argnums=1)
    # Sizes with no, few and many cells of the Feistel grid outside [0, n) to walk back.
    for n in (1, 2, 3, 33, 1000, 4096, 4097, 20_011, 54_616):
        for key in (5, 6, 7):
            order = np.asarray(permutation(jax.random.key(key), n))
            assert np.array_equal(np.sort(order), np.arange(n)), f"n={n}, key={key}"
    first = np.asarray(permutation(jax.random.key(1), 1000))
    again = np.asarray(permutation(jax.random.key(1), 1000))
    other = np.asarray(permutation(jax.random.key(2), 1000))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # Neighbouring rows (near-duplicates in SherLock) are spread like a random shuffle.
    position = np.argsort(first)
    assert np.mean(position[1:] // 32 == position[:-1] // 32) < 3 * 31 / 1000


def test_compiled_program_is_reused_and_gives_the_same_result(data):
    x, y, xv, yv = data
    results = []
    for clear in (False, True):  # Reused (e.g. from the parity test), then compiled afresh.
        if clear:
            clear_fused_cache()
        model = _model(seed=2)
        run_fused(model, x, y, validation_data=(xv, yv), epochs=1, batch_size=32)
        results.append(model.get_weights())
    assert _weights_equal(results[0], results[1])
    # The shuffle, training and validation programs.
    assert [key[1][0] for key in fused_module._PROGRAMS] == ["shuffle", "train", "evaluate"]
    model = _model(seed=9, lr=0.01)  # Same architecture, other learning rate: reused.
    run_fused(model, x, y, validation_data=(xv, yv), epochs=1, batch_size=32)
    assert len(fused_module._PROGRAMS) == 3
    # Another architecture shares the shuffle program (it depends on the data alone).
    run_fused(_model(hidden=7), x, y, validation_data=(xv, yv), epochs=1, batch_size=32)
    assert [key[1][0] for key in fused_module._PROGRAMS].count("shuffle") == 1
    assert len(fused_module._PROGRAMS) == 5
    # Another architecture or optimizer setting has another signature: compiled afresh.
    signature = fused_module._signature(model)
    assert signature is not None
    assert fused_module._signature(_model(hidden=7)) != signature
    other_optimizer = _model(compile_=False)
    other_optimizer.compile(
        optimizer=keras.optimizers.Adam(0.01, beta_1=0.5),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    assert fused_module._signature(other_optimizer) != signature


def _scale(factor: float):
    def scale(t):
        return t * factor

    return scale


def _lambda_model(factor: float) -> keras.Sequential:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((19,)),
            keras.layers.Dense(18, activation="relu"),
            keras.layers.Lambda(_scale(factor)),
            keras.layers.Dense(18, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _activation_model(factor: float) -> keras.Sequential:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((19,)),
            keras.layers.Dense(18, activation=_scale(factor)),
            keras.layers.Dense(18, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _adamw_model(exclude_bias: float) -> keras.Sequential:
    model = _model(seed=0, compile_=False)
    optimizer = keras.optimizers.AdamW(0.01, weight_decay=0.5)
    if exclude_bias:
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(
    "build", [_lambda_model, _activation_model, _adamw_model], ids=["lambda", "activation", "adamw"]
)
def test_program_reuse_tells_apart_what_configs_leave_out(data, build):
    """Models whose configs look alike but whose programs differ never share a program."""
    x, y, _, _ = data
    x, y = x[:320], y[:320]
    clear_fused_cache()
    cold = build(0.0)
    run_fused(cold, x, y, epochs=1, batch_size=32, shuffle=False)
    run_fused(build(1.0), x, y, epochs=1, batch_size=32, shuffle=False)
    after_other = build(0.0)
    run_fused(after_other, x, y, epochs=1, batch_size=32, shuffle=False)
    assert _weights_equal(after_other.get_weights(), cold.get_weights())
    if build is not _adamw_model:  # User functions: never reused.
        assert fused_module._signature(after_other) is None


# --- memory -----------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status VmRSS on this system")
    return 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hidden", "rows", "one_thread"),
    [(18, 32, True), (18, 8192, True), (6898, 32, True), (6899, 32, False), (18, 16384, False)],
    ids=["baseline-steps", "baseline-validation", "at-the-limit", "past-it", "large-chunks"],
)
def test_small_products_are_compiled_for_one_thread(hidden, rows, one_thread):
    # The largest kernel's weights (19 x hidden) times the rows of a step decide: 2**22.
    sets = fused_module._cpu_options(_model(hidden=hidden), rows)
    base = {"xla_backend_optimization_level": 2}
    assert sets == ([base | fused_module._ONE_THREAD_PRODUCTS, base] if one_thread else [base])


@pytest.mark.skipif(
    __import__("jax").default_backend() != "cpu", reason="the options are XLA's CPU options"
)
def test_one_thread_options_reach_the_compiled_step(data):
    import jax

    x, y = data[0][:64], data[1][:64]
    model = _model()
    model._symbolic_build(data_batch=(x[:32], y[:32], None))
    batches = jax.device_put(fused_module._in_order((x, y), 32))
    args = (fused_module._read_state(model), [v.value for v in model.metrics_variables], *batches)
    lowered = jax.jit(fused_module._train_function(model)).lower(*args)
    one_thread = fused_module._compile(lowered, fused_module._cpu_options(model, 32))
    # XLA's custom product fusions are off: every product is a plain dot.
    assert "ynn_fusion" not in one_thread.as_text()
    assert " dot(" in one_thread.as_text()
    default = lowered.compile()
    expected = jax.tree.leaves(default(*args))
    for a, b in zip(jax.tree.leaves(one_thread(*args)), expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_compile_options_xla_refuses_fall_back_to_the_next_set():
    import jax
    import jax.numpy as jnp

    lowered = jax.jit(lambda a: a @ a).lower(jnp.ones((3, 3)))
    with pytest.raises(Exception, match="No such compile option"):
        lowered.compile({"xla_no_such_option": 1})  # What another jaxlib may answer.
    for sets in ([{"xla_no_such_option": 1}, {"xla_backend_optimization_level": 2}],
                 [{"xla_no_such_option": 1}], []):  # fmt: skip
        compiled = fused_module._compile(lowered, sets)
        np.testing.assert_array_equal(np.asarray(compiled(jnp.ones((3, 3)))), np.full((3, 3), 3))


def test_memory_stays_flat_over_50_trainings(data):
    x, y, xv, yv = data
    x, y, xv, yv = x[:2000], y[:2000], xv[:500], yv[:500]
    start = None
    models = []
    for i in range(50):
        # Keras' global state is reset each time; the garbage collector runs as it will.
        keras.backend.clear_session(free_memory=False)
        model = _model(hidden=18 + i % 2, seed=i)  # Two shapes, as in a sweep.
        run_fused(model, x, y, validation_data=(xv, yv), epochs=2, batch_size=32, seed=i)
        models.append(weakref.ref(model))
        del model
        if i == 1:
            start = _rss_mb()  # After the first compilation of each shape.
    keras.backend.clear_session()
    growth = _rss_mb() - start
    assert growth < 200, f"RSS grew by {growth:.0f} MB over 50 trainings"
    assert not any(ref() for ref in models), "the engine kept trained models alive"


@pytest.mark.parametrize("kind", ["sparse", "categorical", "binary"])
def test_cross_entropy_from_logits_clips_as_keras_does_on_probabilities(kind):
    # A row whose true class has a probability below epsilon gives Keras' capped loss
    # and no gradient either way (plain from_logits=True would keep pulling on it).
    import jax

    from appsleuth.engines import _logits

    logits = np.array([[30.0, -30.0, 0.0], [0.5, 0.2, -0.1], [-40.0, 40.0, 1.0]], "float32")
    if kind == "binary":
        logits = logits[:, :1]
        y = np.array([[0.0], [1.0], [1.0]], "float32")
        ours = lambda z: _logits._binary(y, z)  # noqa: E731
        keras_way = lambda z: keras.losses.binary_crossentropy(y, jax.nn.sigmoid(z))  # noqa: E731
    else:
        labels = np.array([1, 0, 0])
        y = labels if kind == "sparse" else np.eye(3, dtype="float32")[labels]
        fn = _logits._sparse_categorical if kind == "sparse" else _logits._categorical
        wrapped = (
            keras.losses.sparse_categorical_crossentropy
            if kind == "sparse"
            else keras.losses.categorical_crossentropy
        )
        ours = lambda z: fn(y, z)  # noqa: E731
        keras_way = lambda z: wrapped(y, jax.nn.softmax(z))  # noqa: E731
    np.testing.assert_allclose(ours(logits), keras_way(logits), rtol=1e-5, atol=1e-6)
    grad_ours = jax.grad(lambda z: ours(z).sum())(logits)
    grad_keras = jax.grad(lambda z: keras_way(z).sum())(logits)
    np.testing.assert_allclose(grad_ours, grad_keras, atol=1e-5)
    hopeless = 0 if kind != "binary" else 2  # true class far below epsilon
    assert not np.any(np.asarray(grad_ours)[hopeless])


def _accuracy_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    nan, inf = float("nan"), float("inf")
    scores = np.array(
        [
            [0.1, 0.7, 0.2, 0.0],  # plain
            [0.5, 0.5, 0.0, 0.0],  # tie: the first maximum wins
            [0.5, 0.5, 0.0, 0.0],
            [nan, 0.2, nan, 0.1],  # NaN: argmax picks the first NaN
            [nan, 0.2, nan, 0.1],
            [0.1, 0.2, nan, 0.1],
            [-0.0, 0.0, -1.0, -2.0],  # -0.0 ranks below 0.0 on CPU
            [-0.0, -0.0, -1.0, -2.0],
            [-inf, -inf, -inf, -inf],
            [inf, 1.0, inf, 0.0],
            [0.1, 0.2, 0.3, 0.4],  # labels out of range or not whole numbers
            [0.1, 0.2, 0.3, 0.4],
            [0.1, 0.2, 0.3, 0.4],
            [0.4, 0.2, 0.3, 0.1],
        ],
        "float32",
    )
    labels = np.array([1, 0, 1, 0, 2, 2, 1, 0, 0, 0, 4, -1, 3.5, -0.0], "float32")
    rng = np.random.default_rng(5)
    ties = rng.integers(0, 3, (400, 18)).astype("float32")  # many ties
    ties[rng.random(ties.shape) < 0.03] = nan
    ties[rng.random(ties.shape) < 0.05] = -0.0
    tie_labels = rng.integers(-1, 19, 400)
    return [(scores, labels), (scores, labels[:, None]), (ties, tie_labels.astype("int32"))]


@pytest.mark.parametrize("case", [0, 1, 2], ids=["edge-cases", "labels-n-by-1", "random-ties"])
@pytest.mark.parametrize("traced", [False, True], ids=["eager", "jit"])
def test_cheaper_accuracy_equals_keras_argmax_accuracy(case, traced):
    import jax

    from appsleuth.engines._metrics import sparse_categorical_accuracy

    scores, labels = _accuracy_cases()[case]
    ours, theirs = sparse_categorical_accuracy, keras.metrics.sparse_categorical_accuracy
    if traced:
        ours, theirs = jax.jit(ours), jax.jit(theirs)
    expected = np.asarray(theirs(labels, scores))
    result = np.asarray(ours(labels, scores))
    assert result.dtype == expected.dtype and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)
    assert 0 < expected.sum() < len(expected)  # The cases hold hits and misses.


def test_cheaper_accuracy_passes_other_shapes_to_keras():
    from appsleuth.engines._metrics import sparse_categorical_accuracy

    scores = np.random.default_rng(0).random((3, 5, 4)).astype("float32")
    labels = np.array([[0, 1, 2, 3, 0]] * 3)
    np.testing.assert_array_equal(
        sparse_categorical_accuracy(labels, scores),
        keras.metrics.sparse_categorical_accuracy(labels, scores),
    )


@pytest.mark.parametrize("from_logits", [False, True], ids=["keras-steps", "logits-plan"])
def test_cheaper_accuracy_gives_the_same_epochs_and_is_undone(data, from_logits, monkeypatch):
    x, y, xv, yv = (a[:1000] for a in data)
    sample_weight = np.random.default_rng(1).random(len(x)).astype("float32")
    monkeypatch.setattr(fused_module, "_FROM_LOGITS", from_logits)
    histories, traced = [], []
    from appsleuth.engines import _metrics

    original = _metrics.sparse_categorical_accuracy

    def counted(y_true, y_pred):
        traced.append(1)
        return original(y_true, y_pred)

    monkeypatch.setattr(_metrics, "sparse_categorical_accuracy", counted)
    for cheaper in (False, True):
        clear_fused_cache()
        monkeypatch.setattr(fused_module, "_CHEAPER_ACCURACY", cheaper)
        traced.clear()
        model = _model(x.shape[1], 18, seed=2, lr=0.01, compile_=False)
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="weighted_acc")],
        )
        history = run_fused(
            model, x, y, sample_weight=sample_weight, epochs=3, validation_data=(xv, yv)
        )
        assert bool(traced) is cheaper
        histories.append(history.history)
        for metric in model._compile_metrics._flat_metrics[0].metrics:
            assert metric._fn is keras.metrics.sparse_categorical_accuracy  # restored
    assert histories[0] == histories[1]  # Bit for bit: the same weights and the same hits.
    assert {"accuracy", "weighted_acc", "val_accuracy"} <= set(histories[1])
