"""The versions of the software a run ran on, as its metadata records them."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from appsleuth._keras import backend_name, backend_version
from appsleuth._version import __version__

__all__ = ["describe_software", "software_text"]

# The packages that can change a run's numbers: NumPy and scikit-learn draw the split,
# pandas and pyarrow read and clean the data, Keras and the backend train. Read from
# the installed distributions, so nothing is imported to learn a version.
_PACKAGES = ("keras", "numpy", "pandas", "scikit-learn", "pyarrow")
# The backend's own package is asked for its version (backend_version: TensorFlow may be
# installed as tensorflow-cpu); JAX's compiled half is a distribution of its own.
_BACKEND_EXTRAS = {"jax": ("jaxlib",)}
# How software_text names them, in this order.
_SHOWN = {
    "appsleuth": "appsleuth",
    "python": "Python",
    "keras": "Keras",
    "jax": "JAX",
    "jaxlib": "jaxlib",
    "tensorflow": "TensorFlow",
    "torch": "PyTorch",
    "numpy": "NumPy",
    "pandas": "pandas",
    "scikit-learn": "scikit-learn",
    "pyarrow": "pyarrow",
}


def describe_software() -> dict[str, str | None]:
    """appsleuth, Python, the platform, Keras, its backend and the data libraries, by version.

    Returns:
        Name to version; a package that is not installed is None. ``platform`` is
        Python's ``platform.platform()`` (system, kernel release, machine, C library).
    """
    backend = backend_name()
    found: dict[str, str | None] = {
        "appsleuth": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        backend: backend_version(backend),
    }
    for name in (*_BACKEND_EXTRAS.get(backend, ()), *_PACKAGES):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def software_text(meta: Mapping[str, Any]) -> str | None:
    """The software a run recorded, in one line (``appsleuth 0.1.0, Python 3.11.9, ...``).

    Args:
        meta: The run's metadata. A run recorded before ``software`` was gives the
            versions it did record (appsleuth, Keras, the backend, Python).

    Returns:
        The line, or None where nothing is known.
    """
    software = meta.get("software")
    if not isinstance(software, Mapping):
        hardware = meta.get("hardware")
        software = {
            "appsleuth": meta.get("appsleuth_version"),
            "python": hardware.get("python") if isinstance(hardware, Mapping) else None,
            "keras": meta.get("keras_version"),
            str(meta.get("backend")): meta.get("backend_version"),
        }
    parts = [
        f"{label} {software[key]}"
        for key, label in _SHOWN.items()
        if isinstance(software.get(key), str)
    ]
    text = ", ".join(parts)
    if isinstance(software.get("platform"), str):
        text = f"{text} on {software['platform']}" if text else software["platform"]
    return text or None
