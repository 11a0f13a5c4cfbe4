"""Run the reliability scenarios with larger counts than CI and print a markdown table.

    python bench/reliability_report.py                      # defaults below, ~10 minutes on 2 cores
    python bench/reliability_report.py --kills 100 --fuzz 200 --diff-seeds 10

Process faults (SIGKILL, concurrent writers, disk full) run on every file engine of
``tests/reliability/engines.py``; the fuzzers and the differential workload run through pytest on
every store of the conformance matrix (``tests/conftest.py``), with their sizes raised by
environment variables. Run from the repository root.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.engines import FILE_ENGINES  # noqa: E402
from tests.reliability.scenarios import concurrent_writers, disk_full, sigkill_trials  # noqa: E402


def pytest_figures(test: str, env: dict[str, str]) -> tuple[list[dict[str, object]], list[str]]:
    """Run one pytest target with ``-s``; its ``[reliability]`` summary lines and its failures."""
    import json

    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-s", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    tail = done.stdout.strip().splitlines()[-1:] or [""]
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAILED ")]
    if done.returncode != 0:
        print(done.stdout[-6000:], file=sys.stderr)
    found = []
    for line in done.stdout.splitlines():
        match = re.match(r"\[reliability\] (.+?): (\{.*\})$", line.strip())
        if match:
            found.append({"title": match.group(1), **json.loads(match.group(2))})
    print(f"  {test}: {tail[0]}", file=sys.stderr)
    return found, failures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=100, help="SIGKILL trials per file engine")
    parser.add_argument("--kill-rows", type=int, default=20_000, help="rows per batch in the SIGKILL writer")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--fuzz", type=int, default=150, help="hypothesis examples per fuzz test and store")
    parser.add_argument("--diff-seeds", type=int, default=10)
    parser.add_argument("--diff-steps", type=int, default=60)
    args = parser.parse_args()

    rows: list[tuple[str, str, str, str, str]] = []  # scenario, engine, trials/inputs, faults, rows lost
    started = time.monotonic()
    for engine in sorted(FILE_ENGINES):
        print(f"{engine}: SIGKILL x{args.kills}", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            kill = sigkill_trials(
                engine, Path(tmp), trials=args.kills, rows=args.kill_rows, max_delay=0.8, seed=1
            )
        rows.append(
            (
                "SIGKILL during writes",
                engine,
                f"{kill.trials} kills ({kill.mid_write} mid-write)",
                f"{kill.acked_batches} acknowledged batches intact; {kill.unacked_committed} unacknowledged "
                f"committed whole; {len(kill.partial_batches)} partial; {kill.duplicate_rows} duplicates",
                str(kill.rows_lost),
            )
        )
        print(f"{engine}: {args.writers} writers x {args.batches} batches + reader", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            conc = concurrent_writers(engine, Path(tmp), writers=args.writers, batches=args.batches, rows=500)
        rows.append(
            (
                "concurrent writers + reader",
                engine,
                f"{conc.writers}x{conc.batches} writes, {conc.reads} reads",
                f"{conc.partial_reads} partial reads; {conc.stored_rows - conc.distinct_rows} duplicates; max wait {conc.max_write_wait:.1f} s (write), "
                f"{conc.max_read_wait:.1f} s (read); {conc.seconds:.0f} s total",
                str(max(conc.expected_rows - conc.distinct_rows, 0)),
            )
        )
        for label, tmpfs, headroom in (("file size limit", False, 0), ("full tmpfs", True, 2_000_000)):
            with tempfile.TemporaryDirectory() as tmp:
                if tmpfs:
                    from tests.reliability.scenarios import can_mount_tmpfs

                    if not can_mount_tmpfs(Path(tmp) / "probe"):
                        continue
                full = disk_full(
                    engine, Path(tmp), seed_rows=20_000, big_rows=300_000, headroom=headroom, tmpfs=tmpfs
                )
            rows.append(
                (
                    f"disk full ({label})",
                    engine,
                    "1 write of 300k rows",
                    f"{full.raised}: {(full.message or '').split(': ')[-1]}",
                    str(full.rows_before - full.rows_after),
                )
            )

    print(f"fuzzing: {args.fuzz} examples per test and store", file=sys.stderr)
    fuzz, failed = pytest_figures(
        "tests/reliability/test_bad_inputs.py", {"RELIABILITY_FUZZ_EXAMPLES": str(args.fuzz)}
    )
    for figures in fuzz:
        rows.append(
            (
                "bad inputs to write / resolve_update",
                "all stores",
                f"{figures['inputs']} inputs",
                f"{figures['rejected']} rejected with MetaxyError, rows unchanged; {figures['accepted']} "
                "accepted, identical across backends",
                "0",
            )
        )
    rows += [("bad inputs: **FAILED**", "", line, "see the test output", "?") for line in failed]
    seeds = ",".join(str(s) for s in range(1, args.diff_seeds + 1))
    print(f"differential: {args.diff_seeds} seeds x {args.diff_steps} steps", file=sys.stderr)
    diff, diff_failed = pytest_figures(
        "tests/reliability/test_differential.py",
        {"RELIABILITY_DIFF_SEEDS": seeds, "RELIABILITY_DIFF_STEPS": str(args.diff_steps)},
    )
    if diff:
        stores = ", ".join(diff[0]["stores"])  # type: ignore[arg-type]
        rows.append(
            (
                "cross-store differential",
                stores,
                f"{len(diff)} seeds x {args.diff_steps} steps",
                f"{sum(int(d['comparisons']) for d in diff)} comparisons identical "  # type: ignore[call-overload]
                f"({sum(int(d.get('rows written', 0)) for d in diff)} rows written)",  # type: ignore[call-overload]
                "0",
            )
        )

    rows += [("differential: **FAILED**", "", line, "see the test output", "?") for line in diff_failed]
    print("| scenario | engine | trials / inputs | faults survived | rows lost |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\n_{time.monotonic() - started:.0f} s on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}_"
    )


if __name__ == "__main__":
    main()
