"""Fixtures of the reliability suite: the file engines the process-level faults run on."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.engines import FILE_ENGINES
from tests.reliability.spawn import call


@pytest.fixture(params=sorted(FILE_ENGINES))
def file_engine(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Name of a file engine whose driver is available (probed by opening a scratch store)."""
    name: str = request.param
    unavailable = call(name, "probe", folder=str(tmp_path / "probe"))["unavailable"]
    if unavailable:
        pytest.skip(f"{name}: {unavailable}")
    return name


Report = Callable[[str, dict[str, object]], None]


@pytest.fixture
def reliability_report(capsys: pytest.CaptureFixture[str]) -> Report:
    """Print a one-line summary that survives output capture (shown with ``-s`` or in ``-rA``)."""
    from tests.reliability.scenarios import summary

    def emit(title: str, figures: dict[str, object]) -> None:
        with capsys.disabled():
            print("\n" + summary(title, figures))

    return emit
