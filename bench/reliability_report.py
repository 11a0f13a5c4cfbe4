"""Run the reliability scenarios with larger counts than CI and print a markdown table.

    python bench/reliability_report.py                      # defaults below, ~15 minutes on 2 cores
    python bench/reliability_report.py --kills 30 --fuzz 40 --parts kill,fuzz

Process faults (SIGKILL, concurrent writers, disk full) run on every file engine of
``tests/reliability/engines.py``; the fuzzers and the differential workload run through pytest on
every store of the conformance matrix (``tests/conftest.py``), with their sizes raised by
environment variables. Run from the repository root.
"""

import argparse
import json
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
from tests.reliability.scenarios import (  # noqa: E402
    can_mount_tmpfs,
    concurrent_writers,
    disk_full,
    sigkill_trials,
)

Rows = list[tuple[str, str, str, str, str]]
"""scenario, engine, trials / inputs, faults survived, rows lost"""


def kill_rows(engine: str, args: argparse.Namespace, rows: Rows) -> None:
    print(f"{engine}: SIGKILL x{args.kills}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        kill = sigkill_trials(
            engine, Path(tmp), trials=args.kills, rows=args.kill_rows, max_delay=0.8, seed=1
        )
    others = ", ".join(f"{n} {phase}" for phase, n in sorted(kill.phases.items()) if phase != "writing")
    rows.append(
        (
            "SIGKILL during writes",
            engine,
            f"{kill.trials} kills: {kill.mid_write} inside `write` ({others})",
            f"{kill.acked_batches} acknowledged batches intact; {kill.unacked_committed} unacknowledged but "
            f"committed whole; {len(kill.partial_batches)} partial; {kill.duplicate_rows} duplicates; "
            f"{len(kill.resolve_failures)} resolve mismatches",
            str(kill.rows_lost),
        )
    )


def concurrency_rows(engine: str, args: argparse.Namespace, rows: Rows) -> None:
    print(f"{engine}: {args.writers} writers x {args.batches} batches + reader", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        conc = concurrent_writers(engine, Path(tmp), writers=args.writers, batches=args.batches, rows=500)
    rows.append(
        (
            "concurrent writers + reader",
            engine,
            f"{conc.writers}x{conc.batches} writes, {conc.reads} reads",
            f"{conc.partial_reads} partial reads; {conc.stored_rows - conc.distinct_rows} duplicates; max wait "
            f"{conc.max_write_wait:.1f} s (write), {conc.max_read_wait:.1f} s (read); {conc.seconds:.0f} s total",
            str(max(conc.expected_rows - conc.distinct_rows, 0)),
        )
    )


def disk_rows(engine: str, rows: Rows) -> None:
    for label, tmpfs, headroom in (("file size limit", False, 0), ("full tmpfs", True, 2_000_000)):
        print(f"{engine}: disk full ({label})", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            if tmpfs and not can_mount_tmpfs(Path(tmp) / "probe"):
                continue
            full = disk_full(
                engine, Path(tmp), seed_rows=20_000, big_rows=300_000, headroom=headroom, tmpfs=tmpfs
            )
        rows.append(
            (
                f"disk full ({label})",
                engine,
                "1 write of 300k rows",
                f"{full.raised}: {(full.message or '').split(': ')[-1]}; earlier rows readable after reopening",
                str(full.rows_before - full.rows_after),
            )
        )


def pytest_figures(test: str, env: dict[str, str]) -> tuple[list[dict[str, object]], list[str]]:
    """Run one pytest target with ``-s``; its ``[reliability]`` summary lines and its failures."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-s", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(done.stdout[-6000:], file=sys.stderr)
    found = []
    for line in done.stdout.splitlines():
        match = re.match(r"\[reliability\] (.+?): (\{.*\})$", line.strip())
        if match:
            found.append({"title": match.group(1), **json.loads(match.group(2))})
    tail = done.stdout.strip().splitlines()[-1:] or [""]
    print(f"  {test}: {tail[0]}", file=sys.stderr)
    return found, [line for line in done.stdout.splitlines() if line.startswith("FAILED ")]


def fuzz_rows(args: argparse.Namespace, rows: Rows) -> None:
    print(f"fuzzing: {args.fuzz} examples per test and store", file=sys.stderr)
    found, failed = pytest_figures(
        "tests/reliability/test_bad_inputs.py", {"RELIABILITY_FUZZ_EXAMPLES": str(args.fuzz)}
    )
    for figures in found:
        rows.append(
            (
                "bad inputs to `write` / `resolve_update`",
                "every store",
                f"{figures['inputs']} inputs",
                f"{figures['rejected']} rejected with `MetaxyError`, rows unchanged; {figures['accepted']} "
                "accepted, identical across backends",
                "0",
            )
        )
    rows.extend(("bad inputs: **FAILED**", "", line, "see the test output", "?") for line in failed)


def diff_rows(args: argparse.Namespace, rows: Rows) -> None:
    seeds = ",".join(str(s) for s in range(1, args.diff_seeds + 1))
    print(f"differential: {args.diff_seeds} seeds x {args.diff_steps} steps", file=sys.stderr)
    found, failed = pytest_figures(
        "tests/reliability/test_differential.py",
        {"RELIABILITY_DIFF_SEEDS": seeds, "RELIABILITY_DIFF_STEPS": str(args.diff_steps)},
    )
    if found:
        stores = ", ".join(str(s) for s in found[0]["stores"])  # type: ignore[attr-defined]
        comparisons = sum(int(str(d["comparisons"])) for d in found)
        written = sum(int(str(d.get("rows written", 0))) for d in found)
        deleted = sum(int(str(d.get("rows deleted", 0))) for d in found)
        rows.append(
            (
                "cross-store differential",
                stores,
                f"{len(found)} seeds x {args.diff_steps} steps",
                f"{comparisons} comparisons identical ({written} rows written, {deleted} deleted)",
                "0",
            )
        )
    rows.extend(("differential: **FAILED**", "", line, "see the test output", "?") for line in failed)


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
    parser.add_argument(
        "--parts", default="kill,concurrency,disk,fuzz,diff", help="comma-separated scenarios"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    rows: Rows = []
    started = time.monotonic()
    for engine in sorted(FILE_ENGINES):
        if "kill" in parts:
            kill_rows(engine, args, rows)
        if "concurrency" in parts:
            concurrency_rows(engine, args, rows)
        if "disk" in parts:
            disk_rows(engine, rows)
    if "fuzz" in parts:
        fuzz_rows(args, rows)
    if "diff" in parts:
        diff_rows(args, rows)

    print("| scenario | engine | trials / inputs | faults survived | rows lost |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\n_{time.monotonic() - started:.0f} s on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}_"
    )


if __name__ == "__main__":
    main()
