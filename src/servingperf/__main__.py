"""``python -m servingperf``: the same CLI as the ``servingperf`` command."""

from servingperf.cli import main

main()
