"""Turn a :class:`~appsleuth.spec.ModelSpec` into a compiled ``keras.Sequential``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from appsleuth._fields import is_integer, repeated
from appsleuth._keras import import_keras
from appsleuth.errors import SpecError, warn
from appsleuth.spec import ModelSpec, TrainSpec, check_layer_weights

__all__ = [
    "OPTIMIZER_SETTING_USERS",
    "build_model",
    "loss_name",
    "make_optimizer",
    "targets_for",
    "teaching_baseline_accuracy",
]

_BINARY_ONLY_METRICS = ("auc", "precision", "recall")
# Optimizer settings and the optimizers that use them.
OPTIMIZER_SETTING_USERS = {
    "momentum": ("sgd", "rmsprop"),
    "beta_1": ("adam", "adamw"),
    "beta_2": ("adam", "adamw"),
}


def loss_name(train: TrainSpec, n_classes: int) -> str:
    """The loss a run uses: ``auto`` resolves from the number of classes.

    Two classes: binary cross-entropy on a sigmoid output. More: categorical
    cross-entropy on a softmax output, computed from class indices
    (``sparse_categorical_crossentropy``, the same quantity without one-hot labels).
    """
    if train.loss != "auto":
        if n_classes == 2 and train.loss != "binary_crossentropy":
            raise SpecError(
                f"loss must be binary_crossentropy (or auto) for a two-class task; "
                f"received loss={train.loss!r}"
            )
        if n_classes > 2 and train.loss == "binary_crossentropy":
            raise SpecError(
                f"loss binary_crossentropy needs two classes; this task has "
                f"{n_classes}; received loss={train.loss!r}"
            )
        return train.loss
    return "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"


def targets_for(y: np.ndarray, loss: str, n_classes: int) -> np.ndarray:
    """Labels in the form ``loss`` expects (indices, one-hot, or 0/1 floats)."""
    y = np.asarray(y)
    if loss == "categorical_crossentropy":
        return np.eye(n_classes, dtype=np.float32)[y]
    if loss == "binary_crossentropy":
        return y.astype(np.float32).reshape(-1, 1)
    return y.astype(np.int32)


def _warn_unused_settings(train: TrainSpec) -> None:
    """Say when a setting has no effect with the chosen optimizer.

    Not an error: a sweep may cross optimizers with momentum, where only some
    combinations use it.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(TrainSpec)}
    unused = [
        f"{name}={getattr(train, name)}"
        for name, optimizers in OPTIMIZER_SETTING_USERS.items()
        if getattr(train, name) != defaults[name] and train.optimizer not in optimizers
    ]
    if unused:
        warn(f"{', '.join(unused)} has no effect with optimizer {train.optimizer!r}")


def make_optimizer(train: TrainSpec) -> Any:
    """The Keras optimizer the spec describes."""
    keras = import_keras()
    _warn_unused_settings(train)
    lr = float(train.learning_rate)
    if train.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=train.beta_1, beta_2=train.beta_2)
    if train.optimizer == "adamw":
        wd = 0.004 if train.weight_decay is None else float(train.weight_decay)
        return keras.optimizers.AdamW(
            learning_rate=lr, weight_decay=wd, beta_1=train.beta_1, beta_2=train.beta_2
        )
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=train.momentum)
    return keras.optimizers.RMSprop(learning_rate=lr, momentum=train.momentum)


def _spec_of(name: str, value: Any, kind: type) -> Any:
    """``value`` as a ``kind`` spec: one already, or built from a mapping of its fields."""
    if isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        return kind.from_dict(value)
    raise SpecError(
        f"{name} must be a {kind.__name__} (or a mapping of its fields); received {name}={value!r}"
    )


def build_model(
    spec: ModelSpec,
    n_features: int,
    classes: Sequence[str],
    train: TrainSpec | None = None,
) -> Any:
    """Build and compile the network.

    Args:
        spec: Hidden layers, activation, dropout, batch normalisation, initializer (a
            :class:`ModelSpec` or a mapping of its fields).
        n_features: Width of the input.
        classes: Class names, each once (their number fixes the output layer).
        train: Optimizer, loss and metrics (a :class:`TrainSpec` or a mapping of its
            fields). Defaults to ``TrainSpec()`` (Adam 0.0003).

    Returns:
        A compiled ``keras.Sequential``: sigmoid output with binary cross-entropy for two
        classes, softmax with categorical cross-entropy for more (from class indices,
        ``sparse_categorical_crossentropy``, unless ``train.loss`` says otherwise).

    Raises:
        SpecError: Invalid sizes, specs or class names, an unknown initializer, or
            metrics that do not suit the task.
    """
    keras = import_keras()
    spec = _spec_of("spec", spec, ModelSpec)
    train = TrainSpec() if train is None else _spec_of("train", train, TrainSpec)
    # x.shape[1] of a NumPy array is an int, but a count NumPy computed is np.int64.
    if not is_integer(n_features) or n_features < 1:
        raise SpecError(
            f"n_features must be a positive integer; received n_features={n_features!r}"
        )
    n_features = int(n_features)
    # A string is a sequence too: "abc" would silently become three classes a, b, c.
    if isinstance(classes, str) or not isinstance(classes, Sequence | np.ndarray | pd.Index):
        raise SpecError(f"classes must be a list of class names; received classes={classes!r}")
    n_classes = len(classes)
    if n_classes < 2:
        raise SpecError(f"classes must hold at least two names; received classes={list(classes)!r}")
    twice = repeated(classes)
    if twice:
        raise SpecError(
            f"classes must name each class once (one output per class); received {twice} "
            f"more than once in classes={list(classes)!r}"
        )
    try:
        keras.initializers.get(spec.kernel_initializer)
    except (ValueError, TypeError) as exc:
        raise SpecError(
            f"kernel_initializer must be a Keras initializer name such as "
            f"random_normal or glorot_uniform; received "
            f"kernel_initializer={spec.kernel_initializer!r}"
        ) from exc
    n_outputs = 1 if n_classes == 2 else n_classes
    check_layer_weights(
        (n_features, *spec.hidden, n_outputs), spec.hidden, f"{n_features} features"
    )
    loss = loss_name(train, n_classes)
    extra = [m for m in train.metrics if m in _BINARY_ONLY_METRICS]
    if extra and n_classes > 2:
        raise SpecError(
            f"metrics {extra} are for two-class tasks; this task has {n_classes} "
            f"classes; received metrics={list(train.metrics)!r}"
        )

    layers: list[Any] = [keras.Input(shape=(n_features,), name="features")]
    for i, (width, rate) in enumerate(zip(spec.hidden, spec.dropout_rates, strict=True)):
        layers.append(
            keras.layers.Dense(
                width,
                activation=spec.activation,
                kernel_initializer=spec.kernel_initializer,
                name=f"hidden_{i + 1}",
            )
        )
        if spec.batch_norm:
            layers.append(keras.layers.BatchNormalization(name=f"batch_norm_{i + 1}"))
        if rate > 0:
            layers.append(keras.layers.Dropout(rate, name=f"dropout_{i + 1}"))
    if n_classes == 2:
        layers.append(
            keras.layers.Dense(
                1, activation="sigmoid", kernel_initializer=spec.kernel_initializer, name="output"
            )
        )
    else:
        layers.append(
            keras.layers.Dense(
                n_classes,
                activation="softmax",
                kernel_initializer=spec.kernel_initializer,
                name="output",
            )
        )
    model = keras.Sequential(layers, name=f"appsleuth_{spec.code}")
    metrics: list[Any] = []
    for m in train.metrics:
        if m == "accuracy":
            metrics.append("accuracy")
        elif m == "auc":
            metrics.append(keras.metrics.AUC(name="auc"))
        elif m == "precision":
            metrics.append(keras.metrics.Precision(name="precision"))
        else:
            metrics.append(keras.metrics.Recall(name="recall"))
    model.compile(optimizer=make_optimizer(train), loss=loss, metrics=metrics)
    return model


def teaching_baseline_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    neurons: int = 18,
    epochs: int = 30,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Final validation accuracy of the teaching network trained with Keras ``fit``.

    One hidden ReLU layer, ``random_normal`` weights, Adam 3e-4, cross-entropy: the
    lesson's model, for judging data (the realism of generated data) rather than for
    producing a run.

    Args:
        x_train: Scaled training features.
        y_train: Training labels (any values; classes are the sorted distinct ones).
        x_val: Scaled validation features.
        y_val: Validation labels, drawn from the training classes.
        neurons: Hidden units. Defaults to 18.
        epochs: Epochs. Defaults to 30.
        batch_size: Batch size. Defaults to 32.
        seed: Keras seed. Defaults to 0.
    """
    from appsleuth.engines import run_engine

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    classes, y_all = np.unique(np.concatenate([y_train, y_val]), return_inverse=True)
    y_tr, y_va = y_all[: len(y_train)], y_all[len(y_train) :]
    train = TrainSpec(batch_size=batch_size, epochs=epochs)
    n = len(classes)
    model = build_model(
        ModelSpec(hidden=(neurons,)), x_train.shape[1], [str(c) for c in classes], train
    )
    loss = loss_name(train, n)
    history = run_engine(
        "fit",
        model,
        x_train,
        targets_for(y_tr, loss, n),
        validation_data=(x_val, targets_for(y_va, loss, n)),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        verbose=0,
        # Groups the same batch-32 Adam steps into one compiled call: less Python overhead.
        steps_per_execution=64,
    )
    return float(history.history["val_accuracy"][-1])
