"""``python -m metaxy_core.cli``: the same as the ``metaxy`` console script."""

from metaxy_core.cli import main

main()
