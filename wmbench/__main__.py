"""`python -m wmbench`: the same as the `wmbench` command."""

from wmbench.cli import main

main()
