"""``python -m arbitrage`` is the ``arbitrage`` command."""

import sys

from arbitrage.cli import main

sys.exit(main())
