"""python -m meshd: the meshd command line."""

from meshd.cli import main

main()
