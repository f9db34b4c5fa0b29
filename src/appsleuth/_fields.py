"""Reading a dataclass's fields from a mapping, with the project's messages."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from appsleuth.errors import SpecError

__all__ = [
    "MAX_SEED",
    "MIN_EMBEDDED_ROWS",
    "check_seed",
    "did_you_mean",
    "fields_from_mapping",
    "is_int",
    "is_number",
    "plain_fields",
    "plain_value",
    "quoted_number_hint",
    "repeated",
    "spec_hash",
]

MAX_SEED = 2**32 - 1  # NumPy's and Keras' seeds are 32-bit
# Fewer rows of embedded data leave apps without rows to learn from. Here rather than in
# spec, which imports pandas: the CLI's --rows option needs it just to show --help.
MIN_EMBEDDED_ROWS = 50


def plain_value(value: Any, _open: frozenset[int] = frozenset()) -> Any:
    """``value`` with NumPy scalars and arrays made Python numbers and lists, containers copied.

    Notebook users pass ``np.float64`` from ``np.logspace`` and ``np.int64`` from arrays;
    specs hold plain values so that checks, YAML and JSON treat them as numbers. The
    copies also keep a spec from changing when the caller's lists change. A container
    that holds itself (a YAML alias loop) is left as it is, for validation to refuse.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else [plain_value(v) for v in value.tolist()]
    if not isinstance(value, Mapping | list | tuple) or id(value) in _open:
        return value
    inner = _open | {id(value)}
    if isinstance(value, Mapping):
        return {plain_value(k, inner): plain_value(v, inner) for k, v in value.items()}
    if type(value) in (list, tuple):  # not named tuples, whose constructors differ
        return type(value)(plain_value(v, inner) for v in value)
    return value


def spec_hash(spec: Any) -> int:
    """A hash of a spec from its ``to_dict()``, for specs that hold dicts (class weights)."""
    return hash(json.dumps(spec.to_dict(), sort_keys=True, default=str))


def plain_fields(obj: Any) -> None:
    """Replace every field of the (frozen) dataclass ``obj`` with :func:`plain_value` of it."""
    for field in dataclasses.fields(obj):
        object.__setattr__(obj, field.name, plain_value(getattr(obj, field.name)))


def is_int(value: Any) -> bool:
    """An integer, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An integer, Python's or NumPy's (a count NumPy computed is ``np.int64``), and not
    a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (an int or a float), and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def quoted_number_hint(value: Any, *, integer: bool = False) -> str:
    """A hint for a number that arrived as text (YAML 1.1 reads ``3e-4`` as a string), or
    for a whole number written as a float where an integer is wanted (``integer=True``)."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return ""
        if not math.isfinite(number):
            return " (it is text, and not a finite number)"
        if integer:
            if number != int(number):
                return " (it is text; write a whole number, without quotes)"
            return f" (it is text; write {int(number)}, without quotes or a decimal point)"
        return (
            f" (it is text: YAML reads a number like {value} without a decimal point as a "
            f"string; write {_yaml_float(number)} instead)"
        )
    if integer and isinstance(value, float) and math.isfinite(value) and value == int(value):
        return f" (write {int(value)}, without a decimal point)"
    return ""


def _yaml_float(number: float) -> str:
    """``number`` as text that YAML 1.1 reads as a float: ``1e-12`` is a string there, so
    an exponent's mantissa gets a decimal point (``1.0e-12``)."""
    text = repr(number)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"  # Python writes the exponent's sign, as YAML needs
    return text


# Names users bring from elsewhere that spelling alone does not lead to: the teaching
# material's column (a sweep's grid takes it, a model section does not) and the options
# of appsleuth train (--lr).
_SYNONYMS = {"hidden_neurons": "hidden", "lr": "learning_rate", "bs": "batch_size"}


def did_you_mean(name: Any, valid: Iterable[str]) -> str:
    """`` (did you mean X?)`` when ``name`` is text close to one of ``valid``, else ``""``.

    A misspelt field or value (``learnig_rate``, ``rleu``) is the commonest mistake in a
    hand-written spec; naming the likely intent saves reading the whole list.
    """
    if not isinstance(name, str):
        return ""
    valid = list(valid)
    if _SYNONYMS.get(name) in valid:
        return f" (did you mean {_SYNONYMS[name]}?)"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.75)
    if not close:  # case alone (Adam, Val_Loss) is a near miss too
        close = [v for v in valid if v.lower() == name.lower()][:1]
    if not close and len(name) >= 3:  # Keras' short names: acc, val_acc
        starting = [v for v in valid if v.startswith(name)]
        close = starting if len(starting) == 1 else []
    return f" (did you mean {close[0]}?)" if close and close[0] != name else ""


def repeated(values: Iterable[Any]) -> list[Any]:
    """The values that occur more than once, each once, sorted by their text."""
    return sorted((v for v, n in Counter(values).items() if n > 1), key=str)


def check_seed(name: str, value: Any) -> None:
    """Raise SpecError unless ``value`` is an integer from 0 to :data:`MAX_SEED`."""
    if not is_int(value) or not 0 <= value <= MAX_SEED:
        raise SpecError(
            f"{name} must be an integer from 0 to {MAX_SEED}; received {name}={value!r}"
            f"{quoted_number_hint(value, integer=True)}"
        )


def fields_from_mapping(cls: type, d: Any, where: str) -> dict[str, Any]:
    """``d`` as keyword arguments of dataclass ``cls``, checked.

    Args:
        cls: The dataclass.
        d: The mapping read from a spec.
        where: The section's name in messages (``train``, ``split``, ...).

    Raises:
        SpecError: ``d`` is not a mapping, has a key that is not text, or names a field
            ``cls`` lacks.
    """
    if not isinstance(d, Mapping):
        raise SpecError(f"{where} must be a mapping of fields; received {where}={d!r}")
    for key in d:
        if not isinstance(key, str):
            raise SpecError(
                f"the keys of {where} must be field names (text); received the key {key!r} "
                f"({type(key).__name__}) in {where}"
            )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise SpecError(
            f"unknown {where} field(s) "
            f"{', '.join(u + did_you_mean(u, names) for u in unknown)}; valid "
            f"fields: {', '.join(sorted(names))}"
        )
    return dict(d)
