"""The ``metaxy`` command line: ``metaxy graph|list|metadata|migrations ...``.

Global options: ``--config PATH`` (default: ``metaxy.toml`` or ``[tool.metaxy]`` in
``pyproject.toml`` found searching up from the working directory) and ``--store NAME``. Errors print
``Error: ...`` in red on stderr and exit with code 1.
"""

import sys
from collections.abc import Sequence

from metaxy_core.cli._app import main as _main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metaxy`` console script; ``argv`` defaults to ``sys.argv[1:]``."""
    code = _main(argv)
    if argv is None:
        sys.exit(code)
    return code
