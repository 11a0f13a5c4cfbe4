"""Generate ``docs/cli-reference.md`` from the ``metaxy`` command's own ``--help`` output.

Run ``python -m tests.docs.gen_cli_reference`` from the repository root after changing a command;
``tests/docs/test_cli_reference.py`` fails while the committed page differs from what this produces.
"""

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli-reference.md"
WIDTH = "100"

_INTRO = """\
# CLI reference

Every command of `metaxy`, with its `--help` text. This page is generated from the command itself
(`python -m tests.docs.gen_cli_reference`), and a test fails when it is out of date. The
[CLI guide](cli.md) shows the commands at work on a real project.

The global options `--config`/`-c` and `--store`/`-s` are accepted by every command, before or after
its name.
"""


def commands() -> list[tuple[str, ...]]:
    """Every command path, depth first: ``()``, ``("graph",)``, ``("graph", "push")``, ..."""
    from metaxy_core.cli import graph, listing, metadata, migrations, plan  # noqa: F401  (register commands)
    from metaxy_core.cli._app import app

    def walk(sub: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name in sorted(n for n in sub if not n.startswith("-")):  # type: ignore[attr-defined]
            yield from walk(sub[name], (*path, name))  # type: ignore[index]

    return list(walk(app, ()))


def help_text(path: tuple[str, ...]) -> str:
    """``metaxy PATH --help`` as plain text, 100 columns wide, without colour."""
    from metaxy_core.cli import main

    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR", "TERM")}
    os.environ.update(COLUMNS=WIDTH, NO_COLOR="1", TERM="dumb")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = main([*path, "--help"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if code != 0:
        raise RuntimeError(f"metaxy {' '.join(path)} --help exited with {code}")
    return "\n".join(line.rstrip() for line in out.getvalue().strip().splitlines())


def render() -> str:
    parts = [_INTRO]
    for path in commands():
        title = " ".join(("metaxy", *path))
        level = "#" * min(len(path) + 2, 4)
        parts.append(f"{level} `{title}`\n\n```text\n$ {title} --help\n{help_text(path)}\n```\n")
    return "\n".join(parts)


def main() -> int:
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
