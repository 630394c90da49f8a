"""The command line (`migrate`, `python -m migrate`): `app` holds the commands, `render` the
output. The only package that prints or exits."""

from migrate.cli.app import app, main

__all__ = ["app", "main"]
