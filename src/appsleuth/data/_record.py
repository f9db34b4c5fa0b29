"""The project's record in ``df.attrs["appsleuth"]``, made cheap for pandas to copy.

pandas deep-copies ``df.attrs`` into every frame or column it derives (``df[col]``,
``df.iloc[...]``, ``df[cols]``...). The record lists the table's columns and features, so
with :func:`copy.deepcopy` each column access costs time in proportion to the number of
columns, and a loop over the columns of a wide table (a few hundred features) takes
time in the square of it: tens of seconds in the quality report alone. The record only
ever holds plain JSON-like values (text, numbers, lists and dicts of them), whose deep
copy can be made without ``deepcopy``'s per-item bookkeeping.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Immutable values: a deep copy of one is the value itself (as ``copy.deepcopy`` gives).
_ATOMIC = (str, int, float, bool, type(None))


class AttrsRecord(dict):
    """A dict whose deep copy is the same as ``copy.deepcopy``'s, made in one pass.

    Lists and dicts are copied (so a copy can be changed without touching the
    original), text and numbers are shared as ``deepcopy`` shares them, and any other
    value is handed to ``copy.deepcopy``.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> AttrsRecord:
        return AttrsRecord((_copy_key(k, memo), _copy_value(v, memo)) for k, v in self.items())


class _Names(list):
    """A list of text and numbers only (the record's column lists), copied in one C call.

    Only :func:`as_record` makes one, from a list whose items are all text or numbers.

    Checking each item's type made every copy, hence every column access, cost a
    Python step per column: a loop over a table of 10,000 columns took minutes.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> _Names:
        # Its items are immutable, so a new list of the same items is a deep copy.
        return _Names(self)


def as_record(record: Mapping[str, Any]) -> AttrsRecord:
    """The record to store in ``df.attrs["appsleuth"]`` (the values are not copied).

    Args:
        record: The plain-Python record (e.g. ``FrameInfo.to_dict()``).

    Returns:
        The same content as an :class:`AttrsRecord`.
    """
    return AttrsRecord((k, _flat(v)) for k, v in record.items())


def _flat(value: Any) -> Any:
    """A list of text and numbers as :class:`_Names`, any other value as it is."""
    if type(value) is list and all(type(v) in _ATOMIC for v in value):
        return _Names(value)
    return value


def _copy_key(key: Any, memo: dict[int, Any]) -> Any:
    return key if type(key) in _ATOMIC else copy.deepcopy(key, memo)


def _copy_value(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is _Names:
        return value.__deepcopy__(memo)
    if kind is list:
        return [v if type(v) in _ATOMIC else _copy_value(v, memo) for v in value]
    if kind is dict:
        return {_copy_key(k, memo): _copy_value(v, memo) for k, v in value.items()}
    return copy.deepcopy(value, memo)
