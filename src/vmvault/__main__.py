"""``python -m vmvault`` is the ``vmvault`` command."""

from vmvault.cli.main import run

run()
