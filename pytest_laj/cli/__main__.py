"""`python -m pytest_laj.cli`: the `laj` command without its console script."""

import sys

from pytest_laj.cli import main

if __name__ == "__main__":
    sys.exit(main())
