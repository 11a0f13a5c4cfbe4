"""The runnable examples in examples/ print the stories the README promises."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_recompute_demo(tmp_path):
    out = run("examples/recompute_demo.py", "--database", str(tmp_path / "m.duckdb"))
    step3 = out.split("3. video/raw.audio code_version 1 -> 2")[1].split("4.")[0]
    assert "video/raw    new=0 stale=3 orphaned=0 changed fields=['audio']" in step3
    assert "video/crop   new=0 stale=3 orphaned=0 changed fields=['audio']" in step3
    assert "video/faces  new=0 stale=0 orphaned=0" in step3
    assert "video/stt    new=0 stale=3 orphaned=0 changed fields=['transcription']" in step3
    step2 = out.split("2. rerun, nothing changed")[1].split("3.")[0]
    assert step2.count("new=0 stale=0 orphaned=0") == 4


def test_expansion_demo(tmp_path):
    db = str(tmp_path / "e.duckdb")
    first = run("examples/expansion_demo.py", "--database", db)
    assert "video/faces: new=11 stale=0 orphaned=0" in first
    assert "video/chunk: new=0 stale=0" in run("examples/expansion_demo.py", "--database", db)
    bumped = run("examples/expansion_demo.py", "--database", db, "--audio", "2")
    assert "video/raw:   new=0 stale=3 orphaned=0" in bumped
    assert "video/chunk: new=0 stale=3 orphaned=0" in bumped
    assert "video/faces: new=0 stale=0 orphaned=0" in bumped
    final = run("examples/expansion_demo.py", "--database", db, "--audio", "2")
    assert final.count("new=0 stale=0 orphaned=0") == 3


def test_aggregation_demo():
    out = run("examples/aggregation_demo.py")
    assert "r2 content changed               speakers new=0 stale=1 orphaned=0  recompute: ['alice']" in out
    assert "r5 added                         speakers new=0 stale=1 orphaned=0  recompute: ['bob']" in out
    assert "final rerun                      speakers new=0 stale=0 orphaned=0  recompute: []" in out


def test_examples_leave_no_files_in_the_current_directory(tmp_path):
    for script in ("expansion_demo.py", "recompute_demo.py", "aggregation_demo.py"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
