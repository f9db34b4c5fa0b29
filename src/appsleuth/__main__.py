"""``python -m appsleuth``: the same as the ``appsleuth`` command."""

import sys

from appsleuth.cli import main

sys.exit(main())
