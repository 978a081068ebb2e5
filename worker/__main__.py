"""``python -m worker`` is the ``riskstream`` command."""

from worker.cli import main

main()
