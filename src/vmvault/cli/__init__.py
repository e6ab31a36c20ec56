"""The ``vmvault`` command line (Typer + Rich)."""
