"""``python -m rmsprop``: the command-line interface."""

import sys

from rmsprop.cli import main

sys.exit(main())
