"""``python -m servingperf.emulator serve ...``: the lean emulator command (see
:mod:`servingperf.emulator.command_line`)."""

import sys

from servingperf.emulator.command_line import main

sys.exit(main())
