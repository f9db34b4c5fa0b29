"""build_model: the layers a spec describes, the right output and loss for the task."""

from __future__ import annotations

import numpy as np
import pytest

from appsleuth.errors import SpecError
from appsleuth.model import build_model, loss_name, targets_for
from appsleuth.spec import ModelSpec, TrainSpec

CLASSES_18 = [f"app{i}" for i in range(18)]


def test_teaching_baseline() -> None:
    model = build_model(ModelSpec(), 19, CLASSES_18)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [18, 18]
    assert dense[0].activation.__name__ == "relu"
    assert dense[-1].activation.__name__ == "softmax"
    assert model.count_params() == 19 * 18 + 18 + 18 * 18 + 18
    init = dense[0].kernel_initializer
    assert init.__class__.__name__ == "RandomNormal"
    assert init.get_config()["stddev"] == pytest.approx(0.05)
    assert model.optimizer.__class__.__name__ == "Adam"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0003)
    assert loss_name(TrainSpec(), 18) == "sparse_categorical_crossentropy"


def test_binary_task_has_a_sigmoid_output() -> None:
    model = build_model(
        ModelSpec(hidden=(4,)), 10, ["Facebook", "WhatsApp"], TrainSpec(metrics=("accuracy", "auc"))
    )
    out = model.layers[-1]
    assert out.units == 1 and out.activation.__name__ == "sigmoid"
    assert loss_name(TrainSpec(), 2) == "binary_crossentropy"
    y = targets_for(np.array([0, 1, 1]), "binary_crossentropy", 2)
    assert y.shape == (3, 1) and y.dtype == np.float32


def test_layers_dropout_batchnorm() -> None:
    model = build_model(
        ModelSpec(hidden=(18, 18, 18), dropout=(0.1, 0.0, 0.2), batch_norm=True), 19, CLASSES_18
    )
    names = [layer.name for layer in model.layers]
    assert names == [
        "hidden_1",
        "batch_norm_1",
        "dropout_1",
        "hidden_2",
        "batch_norm_2",
        "hidden_3",
        "batch_norm_3",
        "dropout_3",
        "output",
    ]


@pytest.mark.parametrize(
    ("optimizer", "cls"),
    [("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSprop"), ("adamw", "AdamW")],
)
def test_optimizers(optimizer: str, cls: str) -> None:
    train = TrainSpec(
        optimizer=optimizer,
        learning_rate=0.01,
        momentum=0.9 if optimizer in ("sgd", "rmsprop") else 0.0,
    )
    model = build_model(ModelSpec(), 5, ["a", "b", "c"], train)
    assert model.optimizer.__class__.__name__ == cls
    if optimizer == "sgd":
        assert model.optimizer.momentum == pytest.approx(0.9)


def test_categorical_crossentropy_uses_one_hot_targets() -> None:
    train = TrainSpec(loss="categorical_crossentropy")
    assert loss_name(train, 3) == "categorical_crossentropy"
    y = targets_for(np.array([2, 0]), "categorical_crossentropy", 3)
    np.testing.assert_array_equal(y, [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: build_model(ModelSpec(), 0, CLASSES_18),
            r"n_features must be a positive integer; received n_features=0",
        ),
        (
            lambda: build_model(ModelSpec(), 5, ["only"]),
            r"classes must hold at least two names; received classes=\['only'\]",
        ),
        (
            lambda: build_model(ModelSpec(kernel_initializer="golden"), 5, CLASSES_18),
            r"kernel_initializer must be a Keras initializer name .*received "
            r"kernel_initializer='golden'",
        ),
        (
            lambda: build_model(ModelSpec(), 5, CLASSES_18, TrainSpec(metrics=("accuracy", "auc"))),
            r"metrics \['auc'\] are for two-class tasks; this task has 18 classes",
        ),
        # A layer far too large for any machine used to abort the process inside XLA.
        (
            lambda: build_model(ModelSpec(hidden=(2**32,)), 300, CLASSES_18),
            r"keep each layer under 1,099,511,627,776 weights .*a layer of 4,294,967,296 "
            r"after 300 features would hold 1,288,490,188,800; received hidden=\[4294967296\]",
        ),
        (
            lambda: build_model(ModelSpec(hidden=(2**37,)), 5, CLASSES_18),
            r"a layer of 18 after a layer of 137,438,953,472 would hold 2,473,901,162,496",
        ),
        (
            lambda: loss_name(TrainSpec(loss="binary_crossentropy"), 5),
            r"loss binary_crossentropy needs two classes; this task has 5",
        ),
        (
            lambda: loss_name(TrainSpec(loss="categorical_crossentropy"), 2),
            r"loss must be binary_crossentropy \(or auto\) for a two-class task",
        ),
    ],
)
def test_errors(call, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        call()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # A string is a sequence: "abc" became three classes a, b and c, silently.
        ({"classes": "abc"}, r"classes must be a list of class names; received classes='abc'"),
        ({"classes": 3}, r"classes must be a list of class names; received classes=3"),
        # Two outputs for one name: the second could never be predicted by its name.
        ({"classes": ["a", "b", "a"]}, r"classes must name each class once .*received \['a'\]"),
        ({"spec": None}, r"spec must be a ModelSpec \(or a mapping of its fields\); received"),
        ({"train": "adam"}, r"train must be a TrainSpec \(or a mapping .*received train='adam'"),
        ({"spec": {"hiden": [4]}}, r"unknown model field\(s\) hiden \(did you mean hidden\?\)"),
        ({"n_features": True}, r"n_features must be a positive integer; received n_features=True"),
    ],
)
def test_build_model_refuses_what_is_no_spec_or_class_list(kwargs: dict, message: str) -> None:
    # Each of these used to end in an AttributeError or TypeError, or in a wrong model.
    args = {"spec": ModelSpec(hidden=(4,)), "n_features": 5, "classes": ["a", "b", "c"]}
    with pytest.raises(SpecError, match=message):
        build_model(**{**args, **kwargs})


def test_build_model_takes_mappings_and_numpy_counts() -> None:
    model = build_model(
        {"hidden": [4]}, np.int64(5), np.array(["a", "b", "c"]), {"learning_rate": 0.01}
    )
    assert model.layers[0].units == 4 and model.layers[-1].units == 3
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_teaching_baseline_accuracy_learns_separable_classes(n_classes: int) -> None:
    from appsleuth.model import teaching_baseline_accuracy

    rng = np.random.default_rng(0)
    labels = np.array([f"app{i}" for i in range(n_classes)])
    y = labels[rng.integers(0, n_classes, 1200)]
    centres = {name: rng.normal(0, 4, 5) for name in labels}
    x = np.stack([centres[v] for v in y]) + rng.normal(0, 0.5, (1200, 5))
    x = x.astype("float32")
    accuracy = teaching_baseline_accuracy(
        x[:1000], y[:1000], x[1000:], y[1000:], neurons=8, epochs=15, batch_size=16
    )
    assert 0.9 < accuracy <= 1.0


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"momentum": 0.9}, "momentum=0.9 has no effect with optimizer 'adam'"),
        ({"optimizer": "sgd", "beta_1": 0.8}, "beta_1=0.8 has no effect with optimizer 'sgd'"),
    ],
)
def test_settings_the_optimizer_ignores_are_said(settings: dict, said: str) -> None:
    from appsleuth.errors import AppSleuthWarning
    from appsleuth.model import make_optimizer

    with pytest.warns(AppSleuthWarning, match=said):
        make_optimizer(TrainSpec(**settings))
