"""Core tests run in an empty working directory, so a metaxy.toml or pyproject.toml near the checkout
can never change their defaults (hash length, stores)."""

import pytest


@pytest.fixture(autouse=True)
def _empty_working_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
