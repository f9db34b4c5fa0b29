#!/usr/bin/env python3
"""Set up and run appsleuth with nothing but Python 3.11+ and pip.

    python3 tasks.py demo [ARGS...]   # the demo on the embedded synthetic data
    python3 tasks.py test [ARGS...]   # lint and the test suite (ARGS go to pytest)

Both create (or reuse) a virtual environment in ``.venv`` and install appsleuth into it
with what it needs; the install is redone only when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("APPSLEUTH_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".appsleuth-install"


def _run(*cmd: str | Path) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def _create_venv() -> None:
    try:
        venv.create(VENV, with_pip=True, clear=VENV.exists())
    except (subprocess.CalledProcessError, OSError):
        # Some system Pythons ship venv without ensurepip; virtualenv brings its own pip.
        if _run(sys.executable, "-m", "pip", "install", "--user", "virtualenv") != 0:
            sys.exit(
                "tasks.py: cannot create a virtual environment (no ensurepip, and "
                "pip could not install virtualenv)"
            )
        if _run(sys.executable, "-m", "virtualenv", "--clear", VENV) != 0:
            sys.exit("tasks.py: virtualenv failed to create .venv")


def _venv_problem() -> str | None:
    """Why .venv cannot be used as it is (None: it can).

    A creation killed midway leaves its Python without pip, and a venv outlives the Python
    that made it (removed or upgraded away): reusing either failed at every later run.
    """
    if not PYTHON.exists():
        return "has no Python" if VENV.exists() else "does not exist"
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('pip') is None)"
    try:
        works = subprocess.run([PYTHON, "-c", check], capture_output=True, check=False)
    except OSError as exc:
        return f"has a Python that cannot start ({exc.strerror or exc})"
    if works.returncode != 0:
        return "has a Python that cannot start, or no pip (its creation was interrupted?)"
    return None


def ensure_environment(extras: str) -> None:
    """Create .venv if needed and install appsleuth[extras] when pyproject changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run on an old Python
        sys.exit(
            f"tasks.py: appsleuth needs Python 3.11 or newer; this is {sys.version.split()[0]}"
        )
    problem = _venv_problem()
    if problem is not None:
        if VENV.exists():
            print(f"tasks.py: {VENV} {problem}; making it anew", file=sys.stderr)
        _create_venv()
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    spec = f".[{extras}]" if extras else "."
    if _run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip") != 0:
        sys.exit("tasks.py: upgrading pip in .venv failed")
    if _run(PYTHON, "-m", "pip", "install", "--quiet", "-e", spec) != 0:
        sys.exit("tasks.py: installing appsleuth into .venv failed")
    STAMP.write_text(digest + "\n")


def demo(args: list[str]) -> int:
    """Run ``appsleuth demo``."""
    ensure_environment("test")
    return _run(BIN / "appsleuth", "demo", *args)


def test(args: list[str]) -> int:
    """Lint and format-check with ruff, then run pytest; no test collected is a failure."""
    ensure_environment("test")
    paths = ("src", "tests", "benchmarks", "tasks.py")
    lint = _run(PYTHON, "-m", "ruff", "check", *paths)
    if lint != 0:
        return lint
    style = _run(PYTHON, "-m", "ruff", "format", "--check", *paths)
    if style != 0:
        print("tasks.py: run 'ruff format' on the files above", file=sys.stderr)
        return style
    code = _run(PYTHON, "-m", "pytest", *_parallel_options(args), *args)
    if code == 5:
        print("tasks.py: pytest collected no tests, which is a failure", file=sys.stderr)
        return 1
    return code


def _parallel_options(args: list[str]) -> list[str]:
    """pytest-xdist options: one test process per core (at most 4), unless ARGS choose.

    Many tests wait on subprocesses (sweep workers, SLURM jobs, notebooks, a browser),
    so two processes halve the suite's time even on two cores. Each test file runs in
    one process (its module fixtures are built once).
    """
    chosen = any(a in ("-n", "--numprocesses", "no:xdist") or a.startswith("-n") for a in args)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    if chosen or cores < 2:
        return []
    return ["-n", str(min(cores, 4)), "--dist", "loadfile"]


def main() -> int:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
