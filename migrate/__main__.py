"""`python -m migrate` runs the same CLI as the `migrate` console script."""

from migrate.cli import main

main()
