"""Lazy package exports (PEP 562): a name's module is imported when the name is first used.

``import appsleuth`` (and so ``appsleuth --help``, tab completion and ``sweep status``)
would otherwise import pandas, scikit-learn and the rest of the data and training stack
before doing anything.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package with lazy exports.

    Args:
        package: The package's ``__name__``.
        exports: Each exported name and the module (relative to ``package``, e.g.
            ``"data.load"``) that defines it.

    Returns:
        ``(__getattr__, __dir__)`` for the package's namespace. ``__getattr__`` imports a
        name's module on first use and keeps the value, so later uses cost nothing; any
        other name is tried as a submodule (``appsleuth.analysis``), as an eager package
        that had imported it would have it, else it raises ``AttributeError``.
    """
    module = sys.modules[package]
    namespace = vars(module)

    def getattr_(name: str) -> Any:
        where = exports.get(name)
        if where is not None:
            value = getattr(importlib.import_module(f"{package}.{where}"), name)
            namespace[name] = value
            return value
        if name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    shadowed = {name for name in exports if name in _submodule_names(module)}
    if shadowed:
        # An export named like a submodule (appsleuth.predict, the function, in the module
        # appsleuth.predict): importing that submodule binds its name on the package to the
        # module, which would hide the function for good. The package keeps the export.
        module.__class__ = _shadowing_class(frozenset(shadowed))
    return getattr_, dir_


def _submodule_names(module: types.ModuleType) -> set[str]:
    import pkgutil

    return {info.name for info in pkgutil.iter_modules(getattr(module, "__path__", []))}


def _shadowing_class(shadowed: frozenset[str]) -> type[types.ModuleType]:
    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in shadowed and isinstance(value, types.ModuleType):
                return
            super().__setattr__(name, value)

    return _Package
