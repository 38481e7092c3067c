"""``python -m campus_provision``."""

from campus_provision.cli import main

main()
