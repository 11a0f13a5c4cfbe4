"""A writer killed with SIGKILL at random moments never leaves a half-written batch behind."""

from dataclasses import asdict
from pathlib import Path

import pytest

from tests.reliability.conftest import Report
from tests.reliability.scenarios import sigkill_trials

TRIALS = 30
ROWS = 20_000  # a write takes ~0.1 s here, so most kills land inside one


@pytest.mark.slow
def test_sigkill_mid_write(file_engine: str, tmp_path: Path, reliability_report: Report) -> None:
    stats = sigkill_trials(file_engine, tmp_path, trials=TRIALS, rows=ROWS, max_delay=0.8, seed=7)
    reliability_report(f"sigkill {file_engine}", asdict(stats))
    assert stats.trials == TRIALS
    assert stats.rows_lost == 0, "acknowledged batches lost rows"
    assert stats.partial_batches == [], "a batch is visible only in part"
    assert stats.duplicate_rows == 0
    assert stats.unexpected_batches == []
    assert stats.resolve_failures == []
    # The oracle only means something if kills do interrupt writes (about half of them land in one).
    assert stats.mid_write >= 3, stats.phases
    assert stats.acked_batches > 0
