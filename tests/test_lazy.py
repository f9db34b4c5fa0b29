"""Lazy package exports: every exported name resolves, and ``import appsleuth`` stays light."""

from __future__ import annotations

import ast
import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from appsleuth._lazy import lazy_exports

PACKAGES = ("appsleuth", "appsleuth.data", "appsleuth.sweep")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_export_resolves_to_its_definition(name: str) -> None:
    package = importlib.import_module(name)
    for export in package.__all__:
        value = getattr(package, export)
        where = package._EXPORTS.get(export)
        if where is not None:
            assert value is getattr(importlib.import_module(f"{name}.{where}"), export)
    assert set(package.__all__) <= set(dir(package))
    # Tab completion offers the exports (and loaded submodules), not the helpers.
    extra = {n for n in dir(package) if not n.startswith("_")} - set(package.__all__)
    assert all(isinstance(getattr(package, n), types.ModuleType) for n in extra), extra
    assert set(package._EXPORTS) <= set(package.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_type_checking_imports_match_the_lazy_exports(name: str) -> None:
    # Type checkers and IDEs read the TYPE_CHECKING imports; the run time reads _EXPORTS.
    package = importlib.import_module(name)
    tree = ast.parse(Path(package.__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n))
    imported = {
        alias.name: node.module.removeprefix(f"{name}.")
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == package._EXPORTS


def test_unknown_names_and_submodules() -> None:
    import appsleuth

    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        _ = appsleuth.no_such_thing
    assert not hasattr(appsleuth, "__wrapped__")  # inspect and doctest probe such names
    from appsleuth import analysis

    assert analysis is sys.modules["appsleuth.analysis"]


@pytest.fixture
def toy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = tmp_path / "lazytoy"
    package.mkdir()
    (package / "tool.py").write_text("def tool():\n    return 'tool'\n\n\nOTHER = 1\n")
    (package / "__init__.py").write_text(
        "from appsleuth._lazy import lazy_exports\n"
        "__getattr__, __dir__ = lazy_exports(__name__, {'tool': 'tool', 'OTHER': 'tool'})\n"
        "del lazy_exports\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lazytoy"
    for name in [m for m in sys.modules if m == "lazytoy" or m.startswith("lazytoy.")]:
        del sys.modules[name]


def test_an_export_named_like_its_module_is_not_replaced_by_the_module(toy_package: str) -> None:
    # appsleuth.predict is the function of the module appsleuth.predict: importing the
    # module for another of its names (predict_file) bound the package's name to the module.
    toy = importlib.import_module(toy_package)
    assert "lazytoy.tool" not in sys.modules  # nothing loaded yet
    assert toy.OTHER == 1
    assert callable(toy.tool) and toy.tool() == "tool"
    importlib.import_module("lazytoy.tool")
    assert callable(toy.tool)
    assert sorted(n for n in dir(toy) if not n.startswith("_")) == ["OTHER", "tool"]


def test_lazy_exports_of_a_plain_module_needs_no_submodules() -> None:
    getattr_, dir_ = lazy_exports("appsleuth.errors", {})
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        getattr_("nothing")
    assert "AppSleuthError" in dir_()
