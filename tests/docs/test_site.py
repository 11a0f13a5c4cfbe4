"""The docs site builds with ``mkdocs build --strict``: no broken link, no page missing from the nav."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.snippets import ROOT


def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs packages are in the dev and docs extras")
    pytest.importorskip("material", reason="the docs packages are in the dev and docs extras")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").is_file()
    assert (site / "cli-reference" / "index.html").is_file()
    shutil.rmtree(site)
