"""Every Python snippet of the docs and the README runs.

Each page runs on its own: its visible ```python blocks and hidden ``<!-- snippet-setup/check -->``
comments (see :mod:`tests.docs.snippets`) execute in page order, in one fresh namespace, with a fresh
active :class:`FeatureGraph`, a clean metaxy config, and an empty temporary working directory (so
``metadata.duckdb`` and friends never land in the repository).
"""

import os
import sys
from pathlib import Path

import pytest

import metaxy_core as mx
from tests.docs.snippets import ROOT, extract, pages, run

MAX_SKIPPED = 3
"""Blocks that cannot run in a test (a running server, ...) over the whole site."""

PAGES = [p for p in pages() if any(not s.skip for s in extract(p))]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_snippets_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Pages may set METAXY_* variables or import modules they create: undo that after the page.
    environ, path, modules = dict(os.environ), list(sys.path), set(sys.modules)
    try:
        with mx.FeatureGraph().use():
            assert run(extract(page)) > 0
    finally:
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            # only modules the page created in its folder (e.g. a features module it imported)
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(tmp_path)):
                del sys.modules[name]
        mx.set_config(None)


def test_snippets_are_found_and_few_are_skipped() -> None:
    snippets = [s for p in pages() for s in extract(p)]
    visible = [s for s in snippets if not s.hidden]
    skipped = [f"{s.page}:{s.line} ({s.skip})" for s in visible if s.skip]
    # A harness that finds nothing would pass vacuously.
    assert len(visible) - len(skipped) >= 20, f"only {len(visible) - len(skipped)} runnable blocks found"
    assert len(skipped) <= MAX_SKIPPED, f"too many skipped blocks: {skipped}"


def test_extract_reads_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n<!-- snippet-setup\nx = 1\n-->\n\n```python\ny = x + 1\n```\n\n"
        "<!-- snippet: skip (needs a server) -->\n```python\nconnect()\n```\n\n```bash\nls\n```\n"
    )
    snippets = extract(page, root=tmp_path)
    assert [(s.line, s.hidden, s.skip, s.code) for s in snippets] == [
        (4, True, None, "x = 1\n"),
        (8, False, None, "y = x + 1\n"),
        (13, False, "needs a server", "connect()\n"),
    ]


def test_a_failing_snippet_fails_with_its_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n<!-- snippet-check\nassert x == 2, 'x is not 2'\n-->\n")
    with pytest.raises(
        AssertionError, match=r"page.md:6: the hidden snippet failed: AssertionError: x is not 2"
    ):
        run(extract(page, root=tmp_path))
