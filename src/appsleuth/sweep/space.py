"""Sweep specs and their plans: an ordered, deterministic list of trials.

A :class:`SweepSpec` names a study, its data, a base run (model and training), and a
search: ``grid`` (Cartesian product), ``zip`` (lists varied together), or ``random``
(seeded draws from distributions), each point repeated over ``repeats`` seeds. Its
:class:`SweepPlan` has ``len()`` and indexing, and trial ``i`` is the same on every
machine: that is what a SLURM array index needs.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from appsleuth._fields import (
    did_you_mean,
    fields_from_mapping,
    plain_fields,
    plain_value,
    spec_hash,
)
from appsleuth.errors import SpecError
from appsleuth.hardware import check_device
from appsleuth.model import OPTIMIZER_SETTING_USERS
from appsleuth.run import validate_name
from appsleuth.spec import (
    DataSpec,
    ModelSpec,
    RunSpec,
    TrainSpec,
    decimal_text,
    format_learning_rate,
    read_yaml_spec,
)

__all__ = [
    "MAX_TRIALS",
    "Distribution",
    "ExecutorSpec",
    "SweepPlan",
    "SweepSpec",
    "Trial",
    "load_sweep_spec",
    "name_settings",
    "normalise_hidden",
    "param_field",
    "parse_distribution",
]

_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainSpec)} - {"seed"}
# Fields a random search may only draw whole numbers for (hidden: one layer's width).
_INT_FIELDS = frozenset({"hidden", "batch_size", "epochs"})
# The teaching material's column name for the hidden layer widths.
_ALIASES = {"hidden_neurons": "hidden"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Plans are built and validated whole (and a SLURM array has a size limit of its own):
# far larger searches are mistakes, and would take minutes just to plan.
MAX_TRIALS = 100_000
_EXECUTOR_FIELDS = ("kind", "workers", "threads_per_trial", "device")
_DIST = re.compile(r"^\s*(loguniform|uniform|int_uniform|choice)\s*\((.*)\)\s*$", re.S)


# The fields the teaching run name shows (model_<code>_lr<lr>_bs<bs>_e<epochs>).
_NAMED_FIELDS = frozenset({"hidden", "learning_rate", "batch_size", "epochs"})
# ``_`` too: names such as leaky_relu, glorot_uniform and categorical_crossentropy are
# valid in a directory name, and without it a varied one could not be shown at all.
# Not ``+``, which run directory names may not hold (validate_name).
_NAME_TEXT = re.compile(r"[A-Za-z0-9._-]+")


def _name_text(value: Any) -> str | None:
    """A varied setting's value as written in a run directory name (``_dropout0.2``).

    Numbers as the learning rate is written (up to 9 decimals, trailing zeros stripped),
    booleans and None in lower case, per-layer lists joined with ``-``.

    Returns:
        The text, or None for a value a directory name cannot hold (a mapping, or text
        with characters other than letters, digits, ``.``, ``_`` and ``-``, or ``..``).
    """
    if isinstance(value, list | tuple):
        parts = [_name_text(v) for v in value]
        return None if None in parts else "-".join(p for p in parts if p is not None)
    if value is None or isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return decimal_text(value)
    if isinstance(value, str) and _NAME_TEXT.fullmatch(value) and ".." not in value:
        return value
    return None


def name_settings(spec: RunSpec, keys: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(field, value text)`` pairs a trial's run name adds for the varied ``keys``.

    Fields the teaching name shows (hidden, learning_rate, batch_size, epochs) add none,
    nor do values a directory name cannot hold (see :func:`_name_text`).
    """
    pairs = []
    for key in keys:
        section, field = param_field(key)
        if field not in _NAMED_FIELDS:
            text = _name_text(getattr(getattr(spec, section), field))
            if text is not None:
                pairs.append((field, text))
    return pairs


def _format_learning_rate_or_none(lr: float) -> str | None:
    """The learning rate as a run name writes it, or None when it is too small to show."""
    try:
        return format_learning_rate(lr)
    except SpecError:
        return None


def param_field(name: str) -> tuple[str, str]:
    """(section, field) of a sweep parameter name; aliases resolved.

    Raises:
        SpecError: The name is not a model or training field.
    """
    field = _ALIASES.get(name, name)
    if field in _MODEL_FIELDS:
        return "model", field
    if field in _TRAIN_FIELDS:
        return "train", field
    valid = sorted(_MODEL_FIELDS | _TRAIN_FIELDS | set(_ALIASES))
    raise SpecError(
        f"sweep parameter {name!r} is not a model or training field"
        f"{did_you_mean(name, valid)}; valid "
        f"names: {', '.join(valid)} (vary seeds with repeats)"
    )


def _check_keys(value: Any, where: str, _seen: set[int] | None = None) -> None:
    """Refuse a non-text key anywhere in a (nested) spec section, naming where it is.

    YAML reads ``1:``, ``yes:`` or ``on:`` as a number or a boolean, never a field name.
    """
    if not isinstance(value, Mapping | list | tuple):
        return
    seen = set() if _seen is None else _seen
    if id(value) in seen:  # a YAML alias seen before (or a loop of them)
        return
    seen.add(id(value))
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                section = where or "the sweep spec"
                raise SpecError(
                    f"the keys of {section} must be field or parameter names (text); received "
                    f"the key {key!r} ({type(key).__name__}) in {section} (quote it in YAML "
                    f"if it is meant as text)"
                )
            _check_keys(item, f"{where}.{key}" if where else key, seen)
    else:
        for i, item in enumerate(value):
            _check_keys(item, f"{where}[{i}]", seen)


def _check_aliases(kind: str, names: Sequence[str]) -> None:
    """Refuse two parameter names of one search that set the same field (hidden and
    hidden_neurons)."""
    first: dict[str, str] = {}
    for name in names:
        field = _ALIASES.get(name, name)
        if field in first:
            other = first[field]
            raise SpecError(
                f"{kind}.{other} and {kind}.{name} both set the field {field!r} "
                f"(hidden_neurons is the teaching name of hidden); keep one of them; "
                f"received {kind} keys {', '.join(map(repr, names))}"
            )
        first[field] = name


def normalise_hidden(value: Any) -> Any:
    """A swept ``hidden`` value as a list of widths: ``18`` becomes ``[18]``; others as given."""
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


def _check_varied_settings_used(names: Sequence[str], specs: Sequence[RunSpec]) -> None:
    """Refuse an optimizer setting varied over several values that no trial's optimizer
    uses.

    Training only warns (in a worker, where nobody reads it), since a sweep that crosses
    optimizers with momentum uses it in some trials; when none does, every trial would
    train the same model under a different name.
    """
    for name in names:
        field = param_field(name)[1]
        users = OPTIMIZER_SETTING_USERS.get(field)
        if not users or any(spec.train.optimizer in users for spec in specs):
            continue
        if len({repr(getattr(spec.train, field)) for spec in specs}) > 1:
            optimizers = sorted({spec.train.optimizer for spec in specs})
            raise SpecError(
                f"{name} is varied, but only optimizer {' and '.join(users)} use it and "
                f"every trial's optimizer is {' or '.join(optimizers)}: each trial would "
                f"train the same model; set base.train.optimizer to {users[0]}, or vary "
                f"optimizer as well"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Distribution:
    """A random-search distribution: ``loguniform``, ``uniform``, ``int_uniform``, ``choice``."""

    kind: str
    args: tuple[Any, ...]

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw."""
        if self.kind == "loguniform":
            lo, hi = self.args
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.kind == "uniform":
            lo, hi = self.args
            return float(rng.uniform(lo, hi))
        if self.kind == "int_uniform":
            lo, hi = self.args
            return int(rng.integers(lo, hi + 1))
        options = self.args[0]
        return options[int(rng.integers(len(options)))]

    def __str__(self) -> str:
        inner = repr(self.args[0]) if self.kind == "choice" else ", ".join(map(repr, self.args))
        return f"{self.kind}({inner})"

    def distinct(self) -> int | None:
        """How many distinct values a draw can take; None for a continuous distribution."""
        if self.kind == "int_uniform":
            return self.args[1] - self.args[0] + 1
        if self.kind == "choice":
            return len({_point_key(v) for v in self.args[0]})
        return None


def _point_key(value: Any) -> str:
    # Values come from YAML or JSON-able Python: their JSON text tells equal points apart.
    return json.dumps(value, sort_keys=True, default=repr)


def _draw_distinct(n: int, seed: int, dists: Mapping[str, Distribution]) -> list[dict[str, Any]]:
    """``n`` distinct points drawn from ``dists`` with ``seed``, in draw order.

    A point drawn again is drawn anew (sampling without replacement, as for a grid): two
    equal points would train the same model twice into one run directory. A plan without
    repeated draws is the plain sequence of draws, so such plans never change.

    Raises:
        SpecError: The distributions have fewer than ``n`` distinct points.
    """
    sizes = {k: d.distinct() for k, d in dists.items()}
    if all(v is not None for v in sizes.values()):
        total = math.prod(v for v in sizes.values() if v is not None)
        if total < n:
            counts = ", ".join(f"{k}: {v}" for k, v in sizes.items())
            raise SpecError(
                f"random.n is {n}, but its distributions hold only {total} distinct "
                f"point(s) ({counts}); lower n to {total} or less (or use grid to try every "
                f"point), widen a distribution, or use repeats for several seeds per point"
            )
    rng = np.random.default_rng(seed)
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(points) < n:  # ends: there are at least n distinct points
        point = {k: d.sample(rng) for k, d in dists.items()}
        key = _point_key(point)
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def parse_distribution(name: str, text: Any) -> Distribution:
    """Parse ``loguniform(1e-4, 1e-1)``, ``uniform(a, b)``, ``int_uniform(a, b)`` or
    ``choice([...])``; arguments are literals (never evaluated as code).

    Raises:
        SpecError: Unknown form or invalid bounds, naming the parameter.
    """
    if isinstance(text, list):
        return Distribution(kind="choice", args=(list(text),))
    match = _DIST.match(text) if isinstance(text, str) else None
    if not match:
        raise SpecError(
            f"random.{name} must be loguniform(a, b), uniform(a, b), "
            f"int_uniform(a, b) or choice([...]); received {name}={text!r}"
        )
    kind, inner = match.groups()
    try:
        args = ast.literal_eval(f"({inner},)")
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        # Python's parser gives up on deep nesting with the last two.
        raise SpecError(
            f"random.{name}: the arguments of {kind} must be numbers or a list; received {text!r}"
        ) from exc
    if kind == "choice":
        if len(args) != 1 or not isinstance(args[0], list | tuple) or not args[0]:
            raise SpecError(f"random.{name}: choice takes one non-empty list; received {text!r}")
        return Distribution(kind=kind, args=(list(args[0]),))
    if (
        len(args) != 2
        or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
        or not args[0] < args[1]
    ):
        raise SpecError(f"random.{name}: {kind} takes two numbers low < high; received {text!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise SpecError(f"random.{name}: loguniform needs a positive low bound; received {text!r}")
    if kind == "int_uniform":
        if not all(isinstance(a, int) for a in args):
            raise SpecError(f"random.{name}: int_uniform takes two integers; received {text!r}")
        if not _INT64_MIN <= args[0] < args[1] <= _INT64_MAX:
            raise SpecError(
                f"random.{name}: int_uniform bounds must be 64-bit integers, from "
                f"{_INT64_MIN} to {_INT64_MAX}; received {text!r}"
            )
        return Distribution(kind=kind, args=tuple(args))
    try:
        lo, hi = float(args[0]), float(args[1])
        finite = math.isfinite(lo) and math.isfinite(hi) and math.isfinite(hi - lo)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise SpecError(
            f"random.{name}: the bounds of {kind} must be finite numbers, less than about "
            f"1.8e308 apart; received {text!r}"
        )
    return Distribution(kind=kind, args=tuple(args))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExecutorSpec:
    """Where trials run.

    Attributes:
        kind: ``local`` (default) or ``slurm``.
        workers: Local worker processes. Defaults to None (one per core / threads).
        threads_per_trial: Threads (cores) each trial may use. Defaults to 1.
        device: Where each trial trains: ``auto`` (default), ``cpu`` or ``gpu``.
        options: Executor-specific settings (for SLURM: partition, time_min, ...).
    """

    kind: str = "local"
    workers: int | None = None
    threads_per_trial: int = 1
    device: str = "auto"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        plain_fields(self)
        if self.kind not in ("local", "slurm"):
            raise SpecError(f"executor kind must be local or slurm; received kind={self.kind!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise SpecError(
                f"workers must be a positive integer; received workers={self.workers!r}"
            )
        if (
            isinstance(self.threads_per_trial, bool)
            or not isinstance(self.threads_per_trial, int)
            or self.threads_per_trial < 1
        ):
            raise SpecError(
                f"threads_per_trial must be a positive integer; received "
                f"threads_per_trial={self.threads_per_trial!r}"
            )
        check_device(self.device)
        if not isinstance(self.options, Mapping):
            raise SpecError(
                f"executor options must be a mapping of SLURM options (partition: short, "
                f"time_min: 30, ...); received options={self.options!r}"
            )
        _check_keys(self.options, "executor.options")
        object.__setattr__(self, "options", dict(self.options))
        if self.options:
            self._check_options()

    def _check_options(self) -> None:
        # Imported here: appsleuth.sweep.slurm imports this module (through the store).
        from appsleuth.sweep.slurm import OPTION_NAMES, SlurmOptions

        unknown = [k for k in self.options if k not in OPTION_NAMES]
        if unknown:
            received = ", ".join(f"{k}={self.options[k]!r}" for k in unknown)
            valid = (*_EXECUTOR_FIELDS, *OPTION_NAMES)
            raise SpecError(
                f"unknown executor field(s) "
                f"{', '.join(repr(k) + did_you_mean(k, valid) for k in unknown)}; valid fields: "
                f"{', '.join(_EXECUTOR_FIELDS)}, and for SLURM {', '.join(OPTION_NAMES)}; "
                f"received {received}"
            )
        # The SLURM values are checked now, so a mistake shows before anything is planned
        # or submitted (a local spec may hold them for --executor slurm).
        SlurmOptions.from_options(self.options, threads_per_trial=self.threads_per_trial)

    def __hash__(self) -> int:
        return spec_hash(self)  # options is a dict

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form."""
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ExecutorSpec:
        """From a mapping; any key other than kind/workers/threads_per_trial is an option."""
        if isinstance(d, str):
            return cls(kind=d)
        if not isinstance(d, Mapping):
            raise SpecError(
                f"executor must be a mapping (kind: local or slurm, workers, "
                f"threads_per_trial, SLURM options) or a kind name (local, slurm); "
                f"received executor={d!r}"
            )
        _check_keys(d, "executor")
        d = dict(d)
        known = {k: d.pop(k) for k in _EXECUTOR_FIELDS if k in d}
        options = d.pop("options", None)
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise SpecError(
                f"executor options must be a mapping of SLURM options (partition: short, "
                f"time_min: 30, ...); received options={options!r}"
            )
        twice = [k for k in d if k in options]
        if twice:
            raise SpecError(
                f"executor field(s) {', '.join(map(repr, twice))} are given both in executor "
                f"and in executor.options; give each once; received "
                + ", ".join(f"{k}={d[k]!r} and options.{k}={options[k]!r}" for k in twice)
            )
        return cls(**known, options={**options, **d})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trial:
    """One point of a sweep, with its seed.

    Attributes:
        index: Position in the plan (the SLURM array index).
        name: Run directory name (teaching naming; a seed suffix when seeds repeat).
        params: The varied hyperparameters and their values, in spec order.
        spec: The full :class:`~appsleuth.spec.RunSpec` of this trial.
    """

    index: int
    name: str
    params: dict[str, Any]
    spec: RunSpec

    def to_dict(self) -> dict[str, Any]:
        """Manifest form."""
        return {
            "index": self.index,
            "name": self.name,
            "params": self.params,
            "spec": self.spec.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(d["index"]),
            name=str(d["name"]),
            params=dict(d["params"]),
            spec=RunSpec.from_dict(d["spec"]),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A study: many runs that differ in a few hyperparameters.

    Attributes:
        name: The sweep directory's name (letters, digits, ``._-``).
        data: The :class:`~appsleuth.spec.DataSpec` shared by all trials.
        base: Model and training every trial starts from (a RunSpec's model/train).
        grid: Parameter -> list of values; the Cartesian product, in key order.
        zip: Parameter -> list of values, all lists of one length, varied together.
        random: ``{"n": N, "seed": S, "params": {name: distribution}}``, a
            distribution being ``"loguniform(1e-4, 1e-1)"``, ``"uniform(a, b)"``,
            ``"int_uniform(a, b)"``, ``"choice([...])"`` or a list of values. The N
            points are distinct (a point drawn again is redrawn).
            With no search (none given, or an empty one such as ``grid: {}``) the plan
            is one point: the base settings, repeated ``repeats`` times.
        repeats: Seeds per point (base seed, +1, ...). Defaults to 1.
        executor: The :class:`ExecutorSpec`.
    """

    name: str
    data: DataSpec = dataclasses.field(default_factory=DataSpec)
    base: RunSpec = dataclasses.field(default_factory=RunSpec)
    grid: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    zip: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    random: dict[str, Any] = dataclasses.field(default_factory=dict)
    repeats: int = 1
    executor: ExecutorSpec = dataclasses.field(default_factory=ExecutorSpec)

    def __post_init__(self) -> None:
        plain_fields(self)
        validate_name(self.name, "sweep name")
        for key in ("data", "base", "grid", "zip", "random", "executor"):
            _check_keys(getattr(self, key), key)
        if isinstance(self.data, Mapping):
            object.__setattr__(self, "data", DataSpec.from_dict(self.data))
        elif not isinstance(self.data, DataSpec):
            raise SpecError(
                f"data must be a mapping of data fields (path, rows, split, ...; leave it out "
                f"for the embedded data); received data={self.data!r}"
            )
        if self.data.path is None and self.data.label != DataSpec.label:
            # Trials read the embedded data, whose label column is fixed: the label would
            # be ignored (a data frame given in Python never reaches a sweep).
            raise SpecError(
                f"data.label names the label column of a data file, and data.path is null "
                f"(the embedded data, whose label column is {DataSpec.label}): received "
                f"label={self.data.label!r} (set data.path, or leave label out)"
            )
        if isinstance(self.base, Mapping):
            base = dict(self.base)
            if "data" in base:
                raise SpecError(
                    "base must hold model and train only; the data section of a "
                    "sweep is its top-level data"
                )
            unknown = sorted(k for k in base if k not in ("model", "train"))
            if unknown:
                raise SpecError(
                    f"unknown base field(s) "
                    f"{', '.join(k + did_you_mean(k, ('model', 'train')) for k in unknown)}; "
                    f"valid fields: model, train"
                )
            object.__setattr__(self, "base", RunSpec.from_dict(base))
        elif isinstance(self.base, RunSpec) and self.base.data != DataSpec():
            raise SpecError(
                "base must hold model and train only; the data of a sweep is its own data "
                f"field (SweepSpec(data=...)); received base.data={self.base.data!r}"
            )
        elif not isinstance(self.base, RunSpec):
            raise SpecError(
                f"base must be a mapping with model and train sections (leave it out for "
                f"the defaults); received base={self.base!r}"
            )
        if isinstance(self.executor, str | Mapping):
            object.__setattr__(self, "executor", ExecutorSpec.from_dict(self.executor))
        elif not isinstance(self.executor, ExecutorSpec):
            raise SpecError(
                f"executor must be a mapping (kind: local or slurm, workers, "
                f"threads_per_trial, SLURM options) or a kind name (local, slurm; leave it "
                f"out for local); received executor={self.executor!r}"
            )
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise SpecError(
                f"repeats must be a positive integer; received repeats={self.repeats!r}"
            )
        searches = [k for k in ("grid", "zip", "random") if getattr(self, k)]
        if len(searches) > 1:
            raise SpecError(
                f"a sweep has one search (grid, zip or random); received {', '.join(searches)}"
            )
        for kind in ("grid", "zip"):
            space = getattr(self, kind)
            if not isinstance(space, Mapping):
                raise SpecError(
                    f"{kind} must map parameter names to lists; received {kind}={space!r}"
                )
            _check_aliases(kind, list(space))
            for name, values in space.items():
                param_field(name)
                if not isinstance(values, list) or not values:
                    raise SpecError(
                        f"{kind}.{name} must be a non-empty list; received {name}={values!r}"
                    )
        if self.zip:
            lengths = {name: len(v) for name, v in self.zip.items()}
            if len(set(lengths.values())) > 1:
                raise SpecError(f"zip lists must have one length; received lengths {lengths}")
        if not isinstance(self.random, Mapping):
            raise SpecError(
                f"random must be {{n: N, seed: S, params: {{name: distribution}}}}; "
                f"received random={self.random!r}"
            )
        if self.random:
            self._random_parts()
        size = self.size()
        if size > MAX_TRIALS:
            raise SpecError(
                f"sweep {self.name!r} would plan {size:,} trials, more than the {MAX_TRIALS:,} "
                f"one sweep may hold; split it into several sweeps or narrow the search"
            )
        self.plan()  # every trial is validated (and names checked) now, before anything runs

    def size(self) -> int:
        """The number of trials, computed without building them."""
        if self.grid:
            points = math.prod(len(v) for v in self.grid.values())
        elif self.zip:
            points = len(next(iter(self.zip.values())))
        elif self.random:
            points = self._random_parts()[0]
        else:
            points = 1
        return points * self.repeats

    def _random_parts(self) -> tuple[int, int, dict[str, Distribution]]:
        r = self.random
        if not isinstance(r, Mapping) or "params" not in r or "n" not in r:
            raise SpecError(
                f"random must be {{n: N, seed: S, params: {{name: distribution}}}}; "
                f"received random={r!r}"
            )
        unknown = sorted(set(r) - {"n", "seed", "params"})
        if unknown:
            raise SpecError(f"unknown random field(s) {', '.join(unknown)}; valid: n, seed, params")
        n, seed = r["n"], r.get("seed", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError(f"random.n must be a positive integer; received n={n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError(f"random.seed must be a non-negative integer; received seed={seed!r}")
        if not isinstance(r["params"], Mapping) or not r["params"]:
            raise SpecError(
                f"random.params must map parameter names to distributions; received "
                f"params={r['params']!r}"
            )
        _check_aliases("random.params", list(r["params"]))
        dists = {}
        for name, text in r["params"].items():
            field = param_field(name)[1]
            dists[name] = parse_distribution(name, text)
            if field in _INT_FIELDS and dists[name].kind in ("uniform", "loguniform"):
                # Said up front: otherwise the first fractional draw fails the whole plan.
                raise SpecError(
                    f"random.{name}: {name} takes whole numbers, but {dists[name].kind} draws "
                    f"fractions; use int_uniform(a, b), or choice([...]) for chosen values "
                    f"such as powers of two; received {name}={text!r}"
                )
        return n, seed, dists

    def points(self) -> list[dict[str, Any]]:
        """The parameter settings, in plan order (before repeats)."""
        if self.grid:
            names = list(self.grid)
            return [
                dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(self.grid[k] for k in names))
            ]
        if self.zip:
            names = list(self.zip)
            length = len(next(iter(self.zip.values())))
            return [{k: self.zip[k][i] for k in names} for i in range(length)]
        if self.random:
            return _draw_distinct(*self._random_parts())
        return [{}]

    def plan(self) -> SweepPlan:
        """The ordered trials.

        Run directories get the teaching names; only when those would repeat (settings
        the teaching name does not show are varied, e.g. dropout) does every name also
        show the varied settings (``..._e30_dropout0.2``), as the seed suffix is added only
        when seeds repeat.

        Raises:
            SpecError: A trial's spec is invalid, or two trials would share a directory.
        """
        entries: list[tuple[dict[str, Any], RunSpec]] = []
        base = self.base.to_dict()
        for point in self.points():
            for r in range(self.repeats):
                d = {
                    "data": self.data.to_dict(),
                    "model": dict(base["model"]),
                    "train": dict(base["train"]),
                }
                for name, value in point.items():
                    section, field = param_field(name)
                    d[section][field] = normalise_hidden(value) if field == "hidden" else value
                d["train"]["seed"] = base["train"]["seed"] + r
                try:
                    spec = RunSpec.from_dict(d)
                except SpecError as exc:
                    raise SpecError(f"trial {len(entries)} ({point}): {exc}") from exc
                if _format_learning_rate_or_none(spec.train.learning_rate) is None:
                    # Said here: run_name's advice (name the run yourself) is for train,
                    # and a sweep names its trials.
                    raise SpecError(
                        f"trial {len(entries)} ({point}): learning_rate "
                        f"{spec.train.learning_rate!r} is below 1e-9, which a trial's run "
                        f"directory name cannot show (it writes 9 decimals); use learning "
                        f"rates of 1e-9 or more (for loguniform: a low bound of 1e-9 or more)"
                    )
                entries.append((point, spec))
        _check_varied_settings_used(self.varied(), [spec for _, spec in entries])
        repeats = self.repeats > 1
        names = [spec.run_name(seed_suffix=repeats) for _, spec in entries]
        if len(set(names)) < len(names):
            keys = self.varied()
            names = [
                spec.run_name(seed_suffix=repeats, settings=name_settings(spec, keys))
                for _, spec in entries
            ]
        trials: list[Trial] = []
        seen: dict[str, int] = {}
        for index, ((point, spec), name) in enumerate(zip(entries, names, strict=True)):
            # Checked now, as the manifest is checked when read: a name refused there
            # made the freshly written manifest read as damaged.
            try:
                validate_name(name, "run directory name")
            except SpecError as exc:
                raise SpecError(f"trial {index} ({point}): {exc}") from exc
            if name in seen:
                raise self._shared_directory(seen[name], index, name, point, trials)
            seen[name] = index
            trials.append(Trial(index=index, name=name, params=dict(point), spec=spec))
        return SweepPlan(trials)

    def _shared_directory(
        self, first: int, index: int, name: str, point: dict[str, Any], trials: list[Trial]
    ) -> SpecError:
        """The error for two trials that would train into one run directory."""
        kind = next((k for k in ("grid", "zip", "random") if getattr(self, k)), "search")
        if _point_key(trials[first].params) == _point_key(point):
            return SpecError(
                f"trials {first} and {index} are the same setting ({point}) and would share "
                f"the run directory {name!r}: {kind} lists it twice; list each value once "
                f"(repeats trains each setting with several seeds)"
            )
        spec = trials[first].spec
        unshown = [
            k
            for k in point
            if param_field(k)[1] not in _NAMED_FIELDS and not name_settings(spec, [k])
        ]
        hint = (
            f" ({', '.join(unshown)} cannot be written in a directory name: run one sweep, "
            f"with its own name, per value of {unshown[0]}, set in base)"
            if unshown
            else ""
        )
        return SpecError(
            f"trials {first} and {index} would share the run directory {name!r}: their "
            f"settings ({trials[first].params} and {point}) differ only in what the directory "
            f"name does not show; it shows hidden, batch_size, epochs, and learning_rate and "
            f"the varied settings' numbers with 9 decimals{hint}"
        )

    def varied(self) -> list[str]:
        """Names of the varied parameters, in spec order."""
        if self.random:
            return list(self.random["params"])
        return list(self.grid or self.zip)

    def __hash__(self) -> int:
        return spec_hash(self)  # grid, zip and random are dicts

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (what the YAML file holds)."""
        base = self.base.to_dict()
        return {
            "name": self.name,
            "data": self.data.to_dict(),
            "base": {"model": base["model"], "train": base["train"]},
            # Copies: editing the returned lists must not change this spec.
            "grid": plain_value(self.grid),
            "zip": plain_value(self.zip),
            "random": plain_value(self.random),
            "repeats": self.repeats,
            "executor": self.executor.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Any) -> SweepSpec:
        """From a mapping (YAML)."""
        _check_keys(d, "")
        run_keys = [k for k in ("model", "train") if isinstance(d, Mapping) and k in d]
        if run_keys:
            # A run spec (a run directory's spec.yaml), or a sweep with base left out.
            raise SpecError(
                f"a sweep spec holds model and train under base (base: {{model: ..., train: "
                f"...}}); received top-level {' and '.join(run_keys)} (a run spec with "
                f"sections data, model and train is for 'appsleuth train --config')"
            )
        d = fields_from_mapping(cls, d, "sweep")
        if "name" not in d:
            raise SpecError("a sweep spec needs a name (it becomes the sweep directory)")
        return cls(**{k: (v if v is not None else _EMPTY.get(k)) for k, v in d.items()})


_EMPTY: dict[str, Any] = {"grid": {}, "zip": {}, "random": {}}


class SweepPlan(Sequence[Trial]):
    """The trials of a sweep, in a fixed order; SLURM array task i runs ``plan[offset + i]``."""

    def __init__(self, trials: Sequence[Trial]) -> None:
        self._trials = tuple(trials)

    def __len__(self) -> int:
        return len(self._trials)

    def __getitem__(self, index: int) -> Trial:  # type: ignore[override]
        return self._trials[index]

    def __iter__(self) -> Iterator[Trial]:
        return iter(self._trials)

    def names(self) -> list[str]:
        """Run directory names, in order."""
        return [t.name for t in self._trials]


def load_sweep_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read a sweep spec from YAML.

    Raises:
        SpecError: The file is missing, not YAML, or holds an invalid field.
    """
    return read_yaml_spec(path, "sweep spec", SweepSpec.from_dict)
