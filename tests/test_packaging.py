"""pyproject.toml: what building and installing appsleuth reads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
)


def test_the_license_is_an_spdx_expression_that_the_build_backend_reads() -> None:
    # The table form (license = {text = ...}) is deprecated in setuptools 77, which warned
    # at every build that such builds stop working from February 2027.
    assert PYPROJECT["project"]["license"] == "MIT"
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if "setuptools" in r]
    assert int(re.fullmatch(r"setuptools>=(\d+).*", setuptools).group(1)) >= 77


def _lower_bound(package: str) -> tuple[int, ...]:
    (requirement,) = [
        r for r in PYPROJECT["project"]["dependencies"] if re.match(rf"{package}\b", r)
    ]
    return tuple(int(p) for p in re.fullmatch(rf"{package}>=([\d.]+)", requirement)[1].split("."))


def test_keras_is_required_from_the_first_version_the_fused_engine_matches() -> None:
    # With Keras 3.14 (then allowed) the fused engine trained an ignore_class loss unlike
    # Keras' own steps (test_engines' ignore-class case failed there; 3.15.0 passes).
    assert _lower_bound("keras") >= (3, 15)
