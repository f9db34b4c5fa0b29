"""The fused engine's work ahead: the next shuffle and epoch started early, checked."""

from __future__ import annotations

import os
import threading

# Before Keras is imported (a keras.json may name another backend), as in test_engines.
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
import pytest

from appsleuth.data.prepare import prepare_data
from appsleuth.data.synth import generate_sherlock
from appsleuth.engines import fused as fused_module
from appsleuth.engines import run_fused
from appsleuth.engines._ahead import WorkAhead


@pytest.fixture(scope="module")
def data():
    """1,000 training rows (31 full batches and a partial one) and 300 validation rows."""
    prepared = prepare_data(generate_sherlock(1_700, seed=3))
    return (
        prepared.x_train[:1_000],
        prepared.y_train[:1_000],
        prepared.x_val[:300],
        prepared.y_val[:300],
    )


def _model(seed: int = 0) -> keras.Sequential:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((19,)),
            keras.layers.Dense(12, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(18, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# --- WorkAhead on its own ----------------------------------------------------------------


def test_a_shuffle_started_ahead_is_used_only_for_its_step_count():
    ahead = WorkAhead(True)
    threads = []

    def started():
        threads.append(threading.current_thread().name)
        return "ahead"

    try:
        ahead.start_shuffle(5, started)
        assert ahead.shuffle(5, lambda: "now") == "ahead"
        assert threads and threads[0].startswith("appsleuth-ahead")  # On its own thread.
        assert ahead.shuffle(5, lambda: "now") == "now"  # Used once.
        ahead.start_shuffle(5, started)
        assert ahead.shuffle(6, lambda: "now") == "now"  # Keyed by another count.
    finally:
        ahead.close()


def test_an_epoch_started_ahead_is_used_only_from_the_very_same_arrays():
    a, b = np.zeros(2), np.ones(2)
    ahead = WorkAhead(True)
    try:
        ahead.start_epoch(3, [[a], [], [b]], lambda: "ahead")
        assert ahead.epoch(3, [[a], [], [b]]) == "ahead"
        assert ahead.epoch(3, [[a], [], [b]]) is None  # Used once.
        ahead.start_epoch(3, [[a], [], [b]], lambda: "ahead")
        assert ahead.epoch(4, [[a], [], [b]]) is None  # Another epoch.
        assert ahead.epochs_ahead  # Dropped once: still started ahead.
        ahead.start_epoch(5, [[a], [], [b]], lambda: "ahead")
        assert ahead.epoch(5, [[a], [], [b]]) == "ahead"  # A use resets the count.
        for epoch in (6, 7):
            ahead.start_epoch(epoch, [[a], [], [b]], lambda: "ahead")
            assert ahead.epoch(epoch, [[a], [], [b.copy()]]) is None
        assert not ahead.epochs_ahead  # Dropped twice in a row: none started ahead.
        ahead.start_epoch(8, [[a], [], [b]], lambda: "ahead")
        assert ahead.epoch(8, [[a], [], [b]]) is None
    finally:
        ahead.close()


@pytest.mark.parametrize(
    ("rate", "later"),
    [
        pytest.param(0.001, lambda a, b, r: [[a], [], [b.copy(), r]], id="equal-values-new-array"),
        pytest.param(0.001, lambda a, b, r: [[a], [], [b, np.float32(0.002)]], id="another-rate"),
        pytest.param(0.001, lambda a, b, r: [[a], [], [b, np.float64(0.001)]], id="another-dtype"),
        pytest.param(0.001, lambda a, b, r: [[a], [], [b, np.float32([0.001])]], id="a-vector"),
        pytest.param(0.0, lambda a, b, r: [[a], [], [b, np.float32(-0.0)]], id="minus-zero"),
        pytest.param(0.001, lambda a, b, r: [[a], [b, r]], id="other-structure"),
        pytest.param(0.001, lambda a, b, r: [[a], [], [b, r, b]], id="more-variables"),
    ],
)
def test_an_epoch_started_from_other_arrays_is_dropped(rate, later):
    a, b, rate = np.zeros(2), np.ones(2), np.float32(rate)
    ahead = WorkAhead(True)
    try:
        ahead.start_epoch(1, [[a], [], [b, rate]], lambda: "ahead")
        assert ahead.epoch(1, later(a, b, rate)) is None
    finally:
        ahead.close()


def test_an_epoch_started_ahead_is_used_when_a_scalar_gets_its_own_value_again():
    """LearningRateScheduler assigns the rate every epoch: a new array, the same value."""
    a = np.zeros(2)
    ahead = WorkAhead(True)
    try:
        ahead.start_epoch(1, [[a], [], [np.float32(0.001), np.int64(7)]], lambda: "ahead")
        assert ahead.epoch(1, [[a], [], [np.float32(0.001), np.int64(7)]]) == "ahead"
    finally:
        ahead.close()


def test_disabled_work_ahead_computes_everything_when_asked():
    ahead = WorkAhead(False)
    ahead.start_shuffle(1, lambda: pytest.fail("started ahead"))
    ahead.start_epoch(1, [[]], lambda: pytest.fail("started ahead"))
    assert ahead.shuffle(1, lambda: "now") == "now"
    assert ahead.epoch(1, [[]]) is None
    ahead.close()


def test_an_error_in_work_ahead_reaches_the_caller_that_uses_it():
    def broken():
        raise ValueError("bad program")

    ahead = WorkAhead(True)
    try:
        ahead.start_shuffle(1, broken)
        with pytest.raises(ValueError, match="bad program"):
            ahead.shuffle(1, lambda: "now")
        ahead.start_shuffle(1, broken)  # Not used: its error goes nowhere.
        assert ahead.shuffle(2, lambda: "now") == "now"
    finally:
        ahead.close()


# --- when the fused engine works ahead -----------------------------------------------------


@pytest.mark.parametrize(
    ("switch", "rows", "cores", "backend", "expected"),
    [
        (True, 1_000, 2, "cpu", True),
        (True, 1_000, 1, "cpu", False),  # It would only take turns with the epoch.
        (True, 1_000, 16, "gpu", False),  # The GPU runs its programs in turn anyway.
        (True, 2**20, 16, "cpu", False),  # Over the size limit below.
        (False, 1_000, 16, "cpu", False),
    ],
)
def test_work_ahead_needs_a_second_core_and_data_that_fits_twice(
    monkeypatch, switch, rows, cores, backend, expected
):
    import jax

    import appsleuth.hardware

    monkeypatch.setattr(fused_module, "_WORK_AHEAD", switch)
    monkeypatch.setattr(fused_module, "_AHEAD_MAX_BYTES", 2**20 * 19 * 4 - 1)
    monkeypatch.setattr(appsleuth.hardware, "available_cores", lambda: cores)
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    train = (np.zeros((rows, 19), np.float32), np.zeros(rows, np.int32))
    assert fused_module._work_ahead(train) is expected


class _ScaleWeights(keras.callbacks.Callback):
    """Halves the weights after one epoch: the epoch started ahead must be dropped."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.model.set_weights([w * 0.5 for w in self.model.get_weights()])


class _StepCountReset(keras.callbacks.Callback):
    """Sets the optimizer's step count back: the next shuffle, keyed by the step count
    expected, must be computed again for the real one."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.model.optimizer.iterations.assign(7)


class _SwapInValidation(keras.callbacks.Callback):
    """Swaps other weights in for validation and the same values back after, as
    SwapEMAWeights does: the arrays are new, so the epoch started ahead must be dropped."""

    def on_test_begin(self, logs=None):
        self.saved = self.model.get_weights()
        self.model.set_weights([w * 0.5 for w in self.saved])

    def on_test_end(self, logs=None):
        self.model.set_weights(self.saved)


class _WeightsSeen(keras.callbacks.Callback):
    """Records the weights every epoch's end shows the callbacks."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model.get_weights())


_CALLBACKS = {
    "none": lambda: [],
    "learning-rate-schedule": lambda: [
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.003 / (1 + epoch))
    ],
    # Assigns the rate every epoch, the same value until epoch 3.
    "learning-rate-step": lambda: [
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.003 if epoch < 3 else 0.001)
    ],
    "weights-changed": lambda: [_ScaleWeights()],
    "weights-swapped-in-validation": lambda: [_SwapInValidation()],
    "step-count-reset": lambda: [_StepCountReset()],
    "early-stopping": lambda: [
        keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    ],
}


@pytest.mark.parametrize("callbacks", list(_CALLBACKS))
@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="shuffled"),
        pytest.param({"shuffle": False}, id="in-order"),
        pytest.param({"class_weight": dict.fromkeys(range(18), 1.0) | {0: 3.0}}, id="weighted"),
        # The next epoch starts ahead and its callbacks run at once, with no validation.
        pytest.param({"validation_data": None}, id="no-validation"),
    ],
)
def test_working_ahead_gives_exactly_the_results_of_working_in_turn(
    monkeypatch, data, callbacks, settings
):
    x, y, xv, yv = data
    taken = []
    original = WorkAhead.epoch

    def epoch(self, index, state):
        result = original(self, index, state)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(WorkAhead, "epoch", epoch)
    runs = []
    settings = {"validation_data": (xv, yv)} | settings
    for switch in (True, False):
        # Forced on, whatever this machine's cores: the results must not depend on it.
        monkeypatch.setattr(fused_module, "_work_ahead", lambda train, on=switch: on)
        model = _model()
        seen = _WeightsSeen()
        history = run_fused(
            model,
            x,
            y,
            epochs=5,
            batch_size=32,
            seed=4,
            callbacks=[*_CALLBACKS[callbacks](), seen],
            **settings,
        )
        runs.append((model.get_weights(), history.history, seen.seen, list(taken)))
        taken.clear()
    (weights, history, seen, ahead_taken), (weights_2, history_2, seen_2, _) = runs
    assert history == history_2
    assert len(seen) == len(seen_2)
    for a, b in zip([weights, *seen], [weights_2, *seen_2], strict=True):
        assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    # Which epochs were taken from ahead: every one after the first unless a callback
    # changed the state before it (none after two such epochs in a row) or training
    # stopped.
    expected = {
        "none": [False, True, True, True, True],
        "learning-rate-schedule": [False, False, False, False, False],
        "learning-rate-step": [False, True, True, False, True],
        "weights-changed": [False, True, False, True, True],
        "weights-swapped-in-validation": [False, False, False, False, False],
        "step-count-reset": [False, True, False, True, True],
        "early-stopping": [False, True],  # Stops after epoch 2.
    }[callbacks]
    if settings["validation_data"] is None and callbacks == "weights-swapped-in-validation":
        expected = [False, True, True, True, True]  # No validation: nothing swapped.
    assert ahead_taken == expected


def test_an_interrupt_while_an_epoch_runs_ahead_leaves_the_model_at_its_last_epoch(
    monkeypatch, data
):
    x, y, xv, yv = data

    class _Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    # The reference works in turn, whatever this machine's cores.
    monkeypatch.setattr(fused_module, "_work_ahead", lambda train: False)
    in_turn = _model()
    run_fused(in_turn, x, y, validation_data=(xv, yv), epochs=3, seed=1)
    monkeypatch.setattr(fused_module, "_work_ahead", lambda train: True)
    started = []
    original = WorkAhead.start_epoch

    def start_epoch(self, epoch, state, compute):
        started.append(epoch)
        original(self, epoch, state, compute)

    monkeypatch.setattr(WorkAhead, "start_epoch", start_epoch)
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        run_fused(model, x, y, validation_data=(xv, yv), epochs=6, seed=1,
                  callbacks=[_Interrupt()])  # fmt: skip
    weights = [in_turn.get_weights(), model.get_weights()]
    # Epoch 4, started ahead while epoch 3 ended, never reached the model.
    assert started[-1] == 3
    assert all(np.array_equal(u, v) for u, v in zip(*weights, strict=True))
    assert int(model.optimizer.iterations.numpy()) == 3 * 32


@pytest.mark.parametrize(
    ("callbacks", "expected"),
    [
        # Each epoch's shuffle was started ahead, keyed by the step count it begins at.
        ("none", [False, True, True, True, True]),
        # The epochs started ahead are dropped at epochs 2 and 3 (each one's shuffle is
        # done again, and the one for the epoch after it with it); no epochs are started
        # ahead after that, and shuffles still are.
        ("learning-rate-schedule", [False, True, False, True, False, True, True]),
    ],
)
def test_the_shuffle_started_ahead_is_keyed_by_the_step_count_the_epoch_begins_at(
    monkeypatch, data, callbacks, expected
):
    # A wrong prediction of the next step count changes no result (the shuffle is then
    # computed again when needed), only the time: this checks the prediction itself.
    x, y, _, _ = data
    hits = []
    original = WorkAhead.shuffle

    def shuffle(self, count, compute):
        hits.append(self._shuffle is not None and self._shuffle[0] == count)
        return original(self, count, compute)

    monkeypatch.setattr(WorkAhead, "shuffle", shuffle)
    monkeypatch.setattr(fused_module, "_work_ahead", lambda train: True)
    run_fused(_model(), x, y, epochs=5, batch_size=32, seed=4, callbacks=_CALLBACKS[callbacks]())
    assert hits == expected
