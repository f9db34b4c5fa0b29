"""``python -m appsleuth``: the same as the ``appsleuth`` command."""

import logging
import os
import sys

from appsleuth.cli import main


def _is_sweep_worker(argv: list[str]) -> bool:
    """Whether the command is ``sweep worker`` (what each SLURM array task runs)."""
    return [a for a in argv if not a.startswith("-")][:2] == ["sweep", "worker"]


code = main()
if _is_sweep_worker(sys.argv[1:]):
    # An array task runs one trial and ends. Everything it writes is renamed into place
    # before main() returns; the interpreter's teardown of JAX, Keras and the data, object
    # by object, only took ~2 s of the task's allocation (as local sweep workers skip it).
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
sys.exit(code)
