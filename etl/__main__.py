"""``python -m etl`` = the ``ponte`` command."""

from etl.cli import main

main()
