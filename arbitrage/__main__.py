"""``python -m arbitrage`` is the ``arbitrage`` command."""

import sys

from arbitrage.commands.cli import main

sys.exit(main())
