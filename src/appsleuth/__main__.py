"""``python -m appsleuth``: the same as the ``appsleuth`` command."""

import sys

from appsleuth.cli import main


def _is_sweep_worker(argv: list[str]) -> bool:
    """Whether the command is ``sweep worker`` (what each SLURM array task runs)."""
    return [a for a in argv if not a.startswith("-")][:2] == ["sweep", "worker"]


code = main()
if _is_sweep_worker(sys.argv[1:]):
    # An array task runs one trial and ends, as a local sweep worker does (same exit).
    from appsleuth.sweep.worker import exit_without_teardown

    exit_without_teardown(code)
sys.exit(code)
