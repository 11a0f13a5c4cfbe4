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


def call(engine: str, role: str, **arguments: Any) -> dict[str, Any]:
    """Run a reporting role of :mod:`tests.reliability.workers` for ``engine``: in this process, or in a
    fresh child when the engine allows one store path per process."""
    from tests.reliability import workers
    from tests.reliability.engines import ISOLATED_ENGINES

    if engine in ISOLATED_ENGINES:
        answer = report(worker(role, engine=engine, **arguments), timeout=300)
        if "per_batch" in answer:  # JSON turned the batch ids into strings
            answer["per_batch"] = {int(k): v for k, v in answer["per_batch"].items()}
        return answer
    return getattr(workers, role)(engine=engine, **arguments)
