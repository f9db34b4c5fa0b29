"""Reading a dataclass's fields from a mapping, with the project's messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from appsleuth.errors import SpecError


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
            f"unknown {where} field(s) {', '.join(unknown)}; valid "
            f"fields: {', '.join(sorted(names))}"
        )
    return dict(d)
