"""`python -m pytest_laj.cli`: the `laj` command without its console script."""

import sys

from pytest_laj.cli import main

sys.exit(main())
