"""The docs site builds with ``mkdocs build --strict``: no broken link, no page missing from the nav."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.docs.snippets import ROOT


def test_site_builds_strict(tmp_path: Path) -> None:
    for package in ("mkdocs", "material"):
        # no skip: CI installs the dev extra, which carries the docs packages
        assert importlib.util.find_spec(package), f"{package} is missing: pip install -e '.[dev]'"
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
