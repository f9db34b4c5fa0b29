"""Specifications of a training run: the data, the model and the training.

Specs are frozen, keyword-only dataclasses, validated on construction, with
``to_dict()``/``from_dict()`` round trips (YAML-friendly, like Keras ``get_config``).
Every invalid field raises :class:`~appsleuth.errors.SpecError` naming the field, the
value received and what would be valid.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from appsleuth._fields import (
    MIN_EMBEDDED_ROWS,
    check_seed,
    did_you_mean,
    is_int,
    is_number,
    plain_fields,
    quoted_number_hint,
    repeated,
    spec_hash,
)
from appsleuth._fields import fields_from_mapping as _from_dict
from appsleuth._files import read_record_text, refuse_nul
from appsleuth.data.layouts import LABEL_COLUMN
from appsleuth.data.split import SplitSpec
from appsleuth.data.synth import check_row_count
from appsleuth.errors import SpecError

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_EPOCHS",
    "MAX_LAYER_WEIGHTS",
    "MIN_EMBEDDED_ROWS",
    "DataSpec",
    "EarlyStoppingSpec",
    "ModelSpec",
    "Optimizer",
    "RunSpec",
    "SpecShapeError",
    "TrainSpec",
    "check_layer_weights",
    "decimal_text",
    "format_learning_rate",
    "load_run_spec",
    "read_yaml_spec",
    "strict_yaml_loader",
]

Optimizer = Literal["adam", "sgd", "rmsprop", "adamw"]
_OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
_ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "leaky_relu")
_LOSSES = ("auto", "categorical_crossentropy", "sparse_categorical_crossentropy",
           "binary_crossentropy")  # fmt: skip
_METRICS = ("accuracy", "auc", "precision", "recall")
_ENGINES = ("auto", "fused", "fit")
_MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


# --- field checks -----------------------------------------------------------------------


_MAX_WEIGHT = 1e6
# One Dense kernel of more weights than this (4 TiB as float32) fits in no machine; far
# larger ones overflow XLA's shape arithmetic, which aborts the process without a message.
MAX_LAYER_WEIGHTS = 2**40
# A day and more of training at the fastest epochs (0.1 s), and far past where early
# stopping ends a run; 10**20 overflowed the int64 columns of results_full.csv after the
# run (a traceback once early stopping had ended such a trial).
MAX_EPOCHS = 1_000_000
# More rows than any table held in memory (a batch larger than the data is the whole
# data); like epochs, 10**20 would overflow results_full.csv's integer columns.
MAX_BATCH_SIZE = 2**31 - 1


def _positive_int(name: str, value: Any) -> None:
    if not is_int(value) or value < 1:
        raise SpecError(
            f"{name} must be a positive integer; received {name}={value!r}"
            f"{quoted_number_hint(value, integer=True)}"
        )


def _non_negative_int(name: str, value: Any) -> None:
    if not is_int(value) or value < 0:
        raise SpecError(
            f"{name} must be a non-negative integer; received {name}={value!r}"
            f"{quoted_number_hint(value, integer=True)}"
        )


def _positive_number(name: str, value: Any) -> None:
    if not is_number(value) or value <= 0:
        raise SpecError(
            f"{name} must be a positive number; received {name}={value!r}"
            f"{quoted_number_hint(value)}"
        )


def _fraction(name: str, value: Any, *, upper_open: bool = True) -> None:
    ok = is_number(value) and value >= 0 and (value < 1 if upper_open else value <= 1)
    if not ok:
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise SpecError(
            f"{name} must be a number in {bound}; received {name}={value!r}"
            f"{quoted_number_hint(value)}"
        )


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise SpecError(
            f"{name} must be one of {', '.join(choices)}; received {name}={value!r}"
            f"{did_you_mean(value, choices)}"
        )


def check_layer_weights(widths: Sequence[int], hidden: Sequence[int], inputs: str) -> None:
    """Raise SpecError when two consecutive layer widths make a kernel too large to hold.

    Args:
        widths: The input width, the hidden widths and (when known) the output width.
        hidden: The hidden widths, as the user gave them (for the message).
        inputs: What ``widths[0]`` is, e.g. ``"1 input"`` or ``"19 features"``.
    """
    for i, (before, width) in enumerate(itertools.pairwise(widths)):
        if before * width > MAX_LAYER_WEIGHTS:
            after = inputs if i == 0 else f"a layer of {before:,}"
            raise SpecError(
                f"hidden layer widths must keep each layer under {MAX_LAYER_WEIGHTS:,} "
                f"weights (4 TiB as float32, more than any machine holds); a layer of "
                f"{width:,} after {after} would hold {before * width:,}; received "
                f"hidden={list(hidden)!r}"
            )


def _str_tuple(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if (
        not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise SpecError(f"{name} must be a non-empty list of names; received {name}={value!r}")
    twice = repeated(value)
    if twice:
        raise SpecError(
            f"{name} must name each one once; received {twice} more than once in "
            f"{name}={list(value)!r}"
        )
    return tuple(value)


# --- the specs --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The network: a stack of Dense layers and a classification output.

    Attributes:
        hidden: Widths of the hidden layers. Defaults to ``(18,)`` (the teaching
            baseline); ``(18, 18)`` is two layers. ``()`` is logistic regression.
        activation: Hidden activation. Defaults to ``relu``.
        dropout: Dropout after each hidden layer: one rate for all, or one per layer.
            Defaults to 0 (none).
        batch_norm: Batch normalisation after each hidden layer. Defaults to False.
        kernel_initializer: A Keras initializer name. Defaults to ``random_normal``
            (normal, mean 0, standard deviation 0.05, as the teaching material).
    """

    hidden: tuple[int, ...] = (18,)
    activation: str = "relu"
    dropout: float | tuple[float, ...] = 0.0
    batch_norm: bool = False
    kernel_initializer: str = "random_normal"

    def __post_init__(self) -> None:
        plain_fields(self)
        hidden = self.hidden
        if is_int(hidden):
            hidden = (hidden,)
        if (
            not isinstance(hidden, Sequence)
            or isinstance(hidden, str)
            or not all(is_int(h) and h >= 1 for h in hidden)
        ):
            raise SpecError(
                f"hidden must be a list of positive layer widths such as [18] or "
                f"[18, 18]; received hidden={self.hidden!r}"
            )
        object.__setattr__(self, "hidden", tuple(hidden))
        check_layer_weights((1, *self.hidden), self.hidden, "at least 1 input")
        _choice("activation", self.activation, _ACTIVATIONS)
        dropout = self.dropout
        if isinstance(dropout, Sequence) and not isinstance(dropout, str):
            if len(dropout) != len(self.hidden):
                raise SpecError(
                    f"dropout must be one rate or one per hidden layer "
                    f"({len(self.hidden)}); received dropout={self.dropout!r}"
                )
            for rate in dropout:
                _fraction("dropout", rate)
            object.__setattr__(self, "dropout", tuple(float(r) for r in dropout))
        else:
            _fraction("dropout", dropout)
        if not isinstance(self.batch_norm, bool):
            raise SpecError(
                f"batch_norm must be true or false; received batch_norm={self.batch_norm!r}"
            )
        if not isinstance(self.kernel_initializer, str) or not self.kernel_initializer:
            raise SpecError(
                f"kernel_initializer must be a Keras initializer name; received "
                f"kernel_initializer={self.kernel_initializer!r}"
            )

    @property
    def dropout_rates(self) -> tuple[float, ...]:
        """One dropout rate per hidden layer."""
        if isinstance(self.dropout, tuple):
            return self.dropout
        return (float(self.dropout),) * len(self.hidden)

    @property
    def code(self) -> str:
        """The teaching material's model code, e.g. ``1H18N`` or ``2H18N18N``."""
        return f"{len(self.hidden)}H" + "".join(f"{h}N" for h in self.hidden)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        if isinstance(self.dropout, tuple):
            d["dropout"] = list(self.dropout)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        kwargs = _from_dict(cls, d, "model")
        for key in ("hidden", "dropout"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EarlyStoppingSpec:
    """Stop when a monitored quantity stops improving.

    Attributes:
        monitor: ``val_loss`` (default), ``val_accuracy``, ``loss`` or ``accuracy``.
        patience: Epochs without improvement before stopping. Defaults to 5.
        min_delta: Smallest change that counts as improvement. Defaults to 0.
        restore_best: Restore the weights of the best epoch. Defaults to True.
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        plain_fields(self)
        _choice("early_stopping.monitor", self.monitor, _MONITORS)
        _non_negative_int("early_stopping.patience", self.patience)
        if not is_number(self.min_delta) or self.min_delta < 0:
            raise SpecError(
                f"early_stopping.min_delta must be a non-negative number; "
                f"received early_stopping.min_delta={self.min_delta!r}"
            )
        if not isinstance(self.restore_best, bool):
            raise SpecError(
                f"early_stopping.restore_best must be true or false; received "
                f"early_stopping.restore_best={self.restore_best!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EarlyStoppingSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**_from_dict(cls, d, "early_stopping"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """How the network is trained.

    Attributes:
        optimizer: ``adam`` (default), ``sgd``, ``rmsprop`` or ``adamw``.
        learning_rate: Defaults to 0.0003 (the teaching baseline).
        momentum: For ``sgd`` and ``rmsprop``. Defaults to 0.
        weight_decay: For ``adamw`` (default 0.004 there); None elsewhere.
        beta_1: Adam/AdamW first-moment decay. Defaults to 0.9.
        beta_2: Adam/AdamW second-moment decay. Defaults to 0.999.
        loss: ``auto`` (default: categorical cross-entropy for several classes, binary
            cross-entropy for two) or a Keras loss name.
        metrics: Metrics reported each epoch. Defaults to ``("accuracy",)``.
        batch_size: Rows per optimizer step, at most 2**31 - 1. Defaults to 32.
        epochs: Defaults to 30; at most 1,000,000.
        seed: Seeds Python, NumPy and Keras. Defaults to 0.
        early_stopping: None (default) or an :class:`EarlyStoppingSpec`.
        class_weight: ``none`` (default), ``balanced`` or a mapping app -> weight.
        engine: ``auto`` (default: ``fused`` on JAX, else ``fit``), ``fused`` or ``fit``.
    """

    optimizer: Optimizer = "adam"
    learning_rate: float = 0.0003
    momentum: float = 0.0
    weight_decay: float | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    loss: str = "auto"
    metrics: tuple[str, ...] = ("accuracy",)
    batch_size: int = 32
    epochs: int = 30
    seed: int = 0
    early_stopping: EarlyStoppingSpec | None = None
    class_weight: str | dict[str, float] = "none"
    engine: str = "auto"

    def __post_init__(self) -> None:
        plain_fields(self)
        _choice("optimizer", self.optimizer, _OPTIMIZERS)
        _positive_number("learning_rate", self.learning_rate)
        _fraction("momentum", self.momentum)
        if self.weight_decay is not None:
            if not is_number(self.weight_decay) or self.weight_decay < 0:
                raise SpecError(
                    f"weight_decay must be a non-negative number; received "
                    f"weight_decay={self.weight_decay!r}"
                )
            if self.optimizer != "adamw":
                raise SpecError(
                    f"weight_decay applies to optimizer adamw only; received "
                    f"weight_decay={self.weight_decay!r} with "
                    f"optimizer={self.optimizer!r}"
                )
        _fraction("beta_1", self.beta_1)
        _fraction("beta_2", self.beta_2)
        _choice("loss", self.loss, _LOSSES)
        metrics = self.metrics
        if isinstance(metrics, str):
            metrics = (metrics,)
        if not isinstance(metrics, Sequence) or not metrics:
            raise SpecError(f"metrics must be a non-empty list; received metrics={metrics!r}")
        for m in metrics:
            _choice("metrics", m, _METRICS)
        if len(set(metrics)) != len(metrics):
            raise SpecError(
                f"metrics must name each metric once; received metrics={list(metrics)!r}"
            )
        if "accuracy" not in metrics:
            raise SpecError(
                f"metrics must include accuracy (the run directory reports it); "
                f"received metrics={list(metrics)!r}"
            )
        object.__setattr__(self, "metrics", tuple(metrics))
        _positive_int("batch_size", self.batch_size)
        _positive_int("epochs", self.epochs)
        if self.batch_size > MAX_BATCH_SIZE:
            raise SpecError(
                f"batch_size must be at most {MAX_BATCH_SIZE:,} (a batch larger than the "
                f"training rows takes them all); received batch_size={self.batch_size!r}"
            )
        if self.epochs > MAX_EPOCHS:
            raise SpecError(
                f"epochs must be at most {MAX_EPOCHS:,} (to train until early stopping "
                f"ends the run, that is as good as more); received epochs={self.epochs!r}"
            )
        check_seed("seed", self.seed)
        es = self.early_stopping
        if isinstance(es, Mapping):
            object.__setattr__(self, "early_stopping", EarlyStoppingSpec.from_dict(es))
        elif es is not None and not isinstance(es, EarlyStoppingSpec):
            raise SpecError(
                f"early_stopping must be a mapping of fields or null (or an "
                f"EarlyStoppingSpec); received early_stopping={es!r}"
            )
        cw = self.class_weight
        if isinstance(cw, Mapping):
            for app, w in cw.items():
                if not isinstance(app, str) or not is_number(w) or not 0 < w <= _MAX_WEIGHT:
                    raise SpecError(
                        f"class_weight must map app names to positive numbers up to "
                        f"{_MAX_WEIGHT:,.0f} (weights are relative; larger ones overflow "
                        f"the loss); received class_weight[{app!r}]={w!r}"
                    )
            object.__setattr__(self, "class_weight", dict(cw))
        elif cw not in ("none", "balanced"):
            raise SpecError(
                f"class_weight must be 'none', 'balanced' or a mapping app -> "
                f"weight; received class_weight={cw!r}"
            )
        _choice("engine", self.engine, _ENGINES)

    def __hash__(self) -> int:
        return spec_hash(self)  # class_weight may be a dict

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form."""
        d = dataclasses.asdict(self)
        d["metrics"] = list(self.metrics)
        d["early_stopping"] = self.early_stopping.to_dict() if self.early_stopping else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainSpec:
        """Inverse of :meth:`to_dict`."""
        kwargs = _from_dict(cls, d, "train")
        if isinstance(kwargs.get("metrics"), list):
            kwargs["metrics"] = tuple(kwargs["metrics"])
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Which data a run uses and how it is shaped into a task.

    Attributes:
        path: A data file; None (default) is the embedded synthetic data.
        rows: Rows of embedded data. Defaults to None (273,129, the real file's size).
        synth_seed: Seed of the embedded data. Defaults to 0.
        label: The label column. Defaults to ``ApplicationName``.
        features: Use only these feature columns. Defaults to all.
        apps: Keep only these apps (two make a binary task). Defaults to all.
        positive: One app against all others (e.g. ``Moriarty``). Defaults to None.
        missing: ``drop`` (default) or ``impute`` incomplete rows (with the training
            rows' medians, kept with the run for prediction).
        split: The :class:`~appsleuth.data.split.SplitSpec`. Defaults to the teaching
            split (random, 20 %, seed 34).
    """

    path: str | None = None
    rows: int | None = None
    synth_seed: int = 0
    label: str = LABEL_COLUMN
    features: tuple[str, ...] | None = None
    apps: tuple[str, ...] | None = None
    positive: str | None = None
    missing: str = "drop"
    split: SplitSpec = dataclasses.field(default_factory=SplitSpec)

    def __post_init__(self) -> None:
        plain_fields(self)
        if self.path is not None:
            if not isinstance(self.path, str | os.PathLike) or not str(self.path):
                raise SpecError(f"data path must be a file path; received path={self.path!r}")
            refuse_nul(self.path, "data.path", SpecError)
            object.__setattr__(self, "path", str(self.path))
        if self.rows is not None and (not is_int(self.rows) or self.rows < MIN_EMBEDDED_ROWS):
            raise SpecError(
                f"rows must be an integer of at least {MIN_EMBEDDED_ROWS} (fewer rows of "
                f"embedded data leave apps without rows to learn from); received "
                f"rows={self.rows!r}{quoted_number_hint(self.rows, integer=True)}"
            )
        if self.rows is not None:
            check_row_count("rows", self.rows)
        check_seed("synth_seed", self.synth_seed)
        if self.path is not None and self.rows is not None:
            raise SpecError(
                f"rows sets the size of the embedded data; a data file is used whole: "
                f"received path={self.path!r} with rows={self.rows!r} (leave one out)"
            )
        if not isinstance(self.label, str) or not self.label:
            raise SpecError(f"label must be a column name; received label={self.label!r}")
        object.__setattr__(self, "features", _str_tuple("features", self.features))
        object.__setattr__(self, "apps", _str_tuple("apps", self.apps))
        if self.apps is not None and len(set(self.apps)) < 2:
            raise SpecError(
                f"apps must name at least two different apps; received apps={list(self.apps)!r}"
            )
        if self.positive is not None and (not isinstance(self.positive, str) or not self.positive):
            raise SpecError(f"positive must be an app name; received positive={self.positive!r}")
        if self.positive is not None and self.apps is not None and self.positive not in self.apps:
            raise SpecError(
                f"positive must be one of apps ({', '.join(self.apps)}); received "
                f"positive={self.positive!r}"
            )
        _choice("missing", self.missing, ("drop", "impute"))
        if isinstance(self.split, Mapping):
            object.__setattr__(self, "split", SplitSpec.from_dict(dict(self.split)))
        elif not isinstance(self.split, SplitSpec):
            raise SpecError(
                f"split must be a mapping of fields (or a SplitSpec); received split={self.split!r}"
            )

    @property
    def is_synthetic(self) -> bool:
        """True when the run uses the embedded generated data."""
        return self.path is None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form."""
        d = dataclasses.asdict(self)
        for key in ("features", "apps"):
            d[key] = list(d[key]) if d[key] is not None else None
        d["split"] = self.split.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**_from_dict(cls, d, "data"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that defines one training run (one trial of a sweep).

    Attributes:
        data: The :class:`DataSpec`.
        model: The :class:`ModelSpec`.
        train: The :class:`TrainSpec`.
    """

    data: DataSpec = dataclasses.field(default_factory=DataSpec)
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    train: TrainSpec = dataclasses.field(default_factory=TrainSpec)

    def __post_init__(self) -> None:
        for name, kind in (("data", DataSpec), ("model", ModelSpec), ("train", TrainSpec)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, kind.from_dict(value))
            elif not isinstance(value, kind):
                # A spec of another kind (model=TrainSpec(...)) is named as what it is.
                raise SpecError(
                    f"{name} must be a mapping of fields (or a {kind.__name__}); received "
                    f"{name}={value!r}"
                )

    def run_name(
        self, *, seed_suffix: bool = False, settings: Sequence[tuple[str, str]] = ()
    ) -> str:
        """The run directory's name, e.g. ``model_1H18N_lr0.0003_bs32_e30``.

        Args:
            seed_suffix: Append ``_seed<seed>`` (sweeps that repeat seeds). Defaults to False.
            settings: ``(field, value text)`` pairs appended as ``_<field><text>`` before
                the seed (a sweep that varies settings the name does not otherwise show,
                e.g. ``_dropout0.2``). Defaults to none.
        """
        name = (
            f"model_{self.model.code}_lr{format_learning_rate(self.train.learning_rate)}"
            f"_bs{self.train.batch_size}_e{self.train.epochs}"
        )
        name += "".join(f"_{field}{text}" for field, text in settings)
        return f"{name}_seed{self.train.seed}" if seed_suffix else name

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (what ``--config run.yaml`` holds)."""
        return {
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_dict`; missing sections take their defaults."""
        return cls(**_from_dict(cls, d, "run"))


def decimal_text(number: float) -> str:
    """A number as run directory names write it.

    Up to 9 decimals, trailing zeros stripped: 0.0003 -> ``0.0003``, 0.1 -> ``0.1``,
    2.0 -> ``2``.
    """
    return f"{number:.9f}".rstrip("0").rstrip(".")


def format_learning_rate(lr: float) -> str:
    """Up to 9 decimals, trailing zeros stripped: 0.0003 -> ``0.0003``, 0.1 -> ``0.1``."""
    text = decimal_text(lr)
    if text in ("0", "-0"):
        raise SpecError(
            f"learning_rate {lr!r} is below 1e-9 and cannot name a run directory (its name "
            f"shows 9 decimals); use 1e-9 or more, or name the run yourself (train --name, "
            f"name=)"
        )
    return text


# A spec holds hundreds of values, a few levels deep. YAML aliases can make a 1 KB file
# stand for billions of values (each level repeating the one before), which every step
# that walks the spec would then expand; and nesting a few hundred levels deep ends YAML's
# and JSON's readers in a RecursionError.
_MAX_SPEC_VALUES = 100_000
_MAX_SPEC_DEPTH = 64


class SpecShapeError(Exception):
    """A spec file is too large once its aliases are expanded, too deep, or refers to itself.

    Raised while reading; :func:`read_yaml_spec` reports it as a :class:`SpecError`.
    """


def _check_shape(root: Any, children: Any) -> None:
    """Refuse a tree whose expanded size or depth passes the limits, or that has a cycle.

    ``children(x)`` gives the items of a container, or None for a value. Shared items
    (YAML aliases) are counted once per place they appear, but walked once: the check
    takes the time of the file, not of its expansion.

    Raises:
        SpecShapeError: What is wrong, with the limit.
    """
    done: dict[int, tuple[int, int]] = {}  # id -> (values when expanded, depth)
    open_: set[int] = set()  # containers being walked: the path from the root
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        item, finish = stack.pop()
        items = children(item)
        if items is None or (not finish and id(item) in done):
            continue
        if finish:
            sizes = [done[id(c)] if children(c) is not None else (1, 0) for c in items]
            values = 1 + sum(n for n, _ in sizes)
            depth = 1 + max((d for _, d in sizes), default=0)
            open_.discard(id(item))
            done[id(item)] = (values, depth)
            if values > _MAX_SPEC_VALUES:
                raise SpecShapeError(
                    f"it stands for more than {_MAX_SPEC_VALUES:,} values once its YAML "
                    f"aliases (*name) are expanded; write out what the aliases repeat"
                )
            if depth > _MAX_SPEC_DEPTH:
                raise SpecShapeError(
                    f"it nests lists or mappings more than {_MAX_SPEC_DEPTH} levels deep"
                )
            continue
        if id(item) in open_:
            raise SpecShapeError(
                "a YAML alias (*name) refers to a list or mapping that contains it, which "
                "would repeat without end"
            )
        if len(open_) >= _MAX_SPEC_DEPTH:
            raise SpecShapeError(
                f"it nests lists or mappings more than {_MAX_SPEC_DEPTH} levels deep"
            )
        open_.add(id(item))
        stack.append((item, True))
        stack.extend((c, False) for c in items)


def _node_children(node: Any) -> list[Any] | None:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return None


def _data_children(value: Any) -> list[Any] | None:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list | tuple | set):
        return list(value)
    return None


def strict_yaml_loader() -> type:
    """The YAML loader of spec files: a ``yaml.SafeLoader`` subclass, stricter.

    It refuses a key given twice in one mapping (the last would win), and documents that
    expand too far or nest too deep (see :func:`_check_shape`), raising
    :class:`SpecShapeError` or ``yaml.YAMLError``.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_document(self) -> Any:
            # Checked as nodes, before anything is built from them.
            node = super().compose_document()
            _check_shape(node, _node_children)
            return node

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base`: explicit keys may override merged ones
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"the key {key!r} appears twice in one mapping (first on line "
                        f"{seen[key].line + 1}); give each key once",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _yaml_problem(exc: Exception) -> str:
    """A YAML error as one line: where, then what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


class _DuplicateKeyError(ValueError):
    """A JSON object gives one key twice."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (``json`` would keep the last silently)."""
    d: dict[str, Any] = {}
    for key, value in pairs:
        if key in d:
            raise _DuplicateKeyError(
                f"the key {key!r} appears twice in one object; give each key once"
            )
        d[key] = value
    return d


def _load_json(text: str) -> Any:
    """JSON text, with duplicate keys refused.

    Raises:
        json.JSONDecodeError, _DuplicateKeyError: The text is not valid JSON.
    """
    return json.loads(text, object_pairs_hook=_json_object)


def _json_problem(exc: ValueError) -> str:
    """A JSON error as one line: where (when known), then what."""
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    return str(exc)


def _load_text(text: str, path: Path, what: str) -> Any:
    """The data of a spec file's text: JSON for ``.json``, else YAML (or JSON it refuses).

    Raises:
        SpecError: The text is not valid YAML or JSON.
        SpecShapeError, RecursionError: It expands too far or nests too deep.
    """
    import yaml

    if path.suffix.lower() == ".json":
        try:
            d = _load_json(text)
        except ValueError as exc:
            raise SpecError(f"{what} {path} is not valid JSON: {_json_problem(exc)}") from exc
    else:
        try:
            return yaml.load(text, Loader=strict_yaml_loader())  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            try:
                d = _load_json(text)
            except ValueError:
                raise SpecError(f"{what} {path} is not valid YAML: {_yaml_problem(exc)}") from exc
    _check_shape(d, _data_children)
    return d


def _checkout_hint(path: Path) -> str:
    """``; did you mean <checkout>/<path>?`` when ``path`` is relative to appsleuth's source
    checkout (the README's ``examples/sweeps/...`` run from another folder); for a teaching
    study's file without a checkout, how to write it; else ``""``."""
    if path.is_absolute():
        return ""
    checkout = Path(__file__).resolve().parents[2]  # src/appsleuth/spec.py -> checkout
    candidate = checkout / path
    if (checkout / "pyproject.toml").is_file() and candidate.is_file():
        return f"; did you mean {candidate} (in the appsleuth checkout)?"
    from appsleuth.demo import STUDIES

    if path.suffix == ".yaml" and path.stem in STUDIES:
        # An installed appsleuth (pip install, not -e) has no examples folder to point at.
        where = shlex.quote(str(path.parent))
        return (
            f"; the teaching studies are not installed as files: 'appsleuth sweep examples "
            f"{where}' writes them there"
        )
    return ""


def read_yaml_spec(path: str | os.PathLike[str], what: str, build: Any) -> Any:
    """Read YAML (or JSON) from ``path`` and build a spec from it with ``build(mapping)``.

    A ``.json`` file is read as JSON: YAML would refuse its tab indentation, read ``1e-3``
    as text, and report its mistakes in YAML's terms. Any other file is read as YAML, or
    as JSON when it is JSON that YAML refuses.

    Every problem becomes a :class:`SpecError` that starts with ``<what> <path>``; a file
    with no settings at all (empty, comments, ``null``) is one.
    """
    refuse_nul(path, "path", SpecError)
    path = Path(path)
    try:
        text = read_record_text(path)
    except FileNotFoundError as exc:
        raise SpecError(f"{what} {path} does not exist{_checkout_hint(path)}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{what} {path} cannot be read: {exc}") from exc
    try:
        d = _load_text(text, path, what)
    except (SpecShapeError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, SpecShapeError) else "it nests too deeply to read"
        raise SpecError(f"{what} {path} cannot be used: {why}") from exc
    if d is None:
        # An empty file (or one of comments, or null) is far likelier a wrong or
        # half-written file than a wish for every default, which needs no file at all.
        raise SpecError(
            f"{what} {path} holds no settings (it is empty, or only comments or null); "
            f"expected a mapping of settings (write {{}} to take every default)"
        )
    try:
        return build(d)
    except SpecError as exc:
        raise SpecError(f"{what} {path}: {exc}") from exc


def load_run_spec(path: str | os.PathLike[str]) -> RunSpec:
    """Read a run spec from YAML (sections ``data``, ``model``, ``train``).

    Raises:
        SpecError: The file is missing, not YAML, or holds an invalid field.
    """

    def build(d: Any) -> RunSpec:
        sweep_keys = [k for k in _SWEEP_ONLY if isinstance(d, Mapping) and k in d]
        if sweep_keys:
            # The two kinds of spec are easily mixed up; say which command takes this one.
            raise SpecError(
                f"this is a sweep spec (it has {', '.join(sweep_keys)}), not a run spec: run "
                f"it with 'appsleuth sweep run {path}'; --config takes a run spec with the "
                f"sections data, model and train (a run directory's spec.yaml is one)"
            )
        return RunSpec.from_dict(d)

    return read_yaml_spec(path, "config file", build)


# Fields of a sweep spec that a run spec does not have.
_SWEEP_ONLY = ("name", "base", "grid", "zip", "random", "repeats", "executor")
