"""Start worker processes with this checkout's code importable (also in CI, where it is installed)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def worker(role: str, **arguments: Any) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.workers", role, json.dumps(arguments)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def report(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Wait for a worker and parse its last stdout line; fail with its stderr if it crashed."""
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise AssertionError(f"worker exited with {process.returncode}:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])
