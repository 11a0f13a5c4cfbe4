"""DuckDB file sharing between real processes: arrival order, read-only opens, clear open errors."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx

WORKER = [sys.executable, "-m", "tests.engine.lock_worker"]


def _raw() -> type[mx.BaseFeature]:
    class Raw(mx.Feature, spec=mx.FeatureSpec(key="raw")):
        pass

    return Raw


def _samples() -> pl.DataFrame:
    return pl.DataFrame(
        {"sample_uid": ["a", "b"], "metaxy_provenance_by_field": [{"default": "1"}, {"default": "2"}]}
    )


def _hold(path: Path, seconds: float, *, read_only: bool = False) -> subprocess.Popen[bytes]:
    """A process that holds ``path`` for ``seconds``; returns once it has the file."""
    marker = Path(f"{path}.holder")
    proc = subprocess.Popen(
        [*WORKER, "hold", str(path), str(marker), str(seconds), "1" if read_only else "0"]
    )
    deadline = time.monotonic() + 30
    while not Path(f"{marker}.opened").exists():
        assert proc.poll() is None, "the holder died"
        assert time.monotonic() < deadline, "the holder never opened the file"
        time.sleep(0.01)
    Path(f"{marker}.opened").unlink()
    return proc


def _release(path: Path, holder: subprocess.Popen[bytes]) -> None:
    Path(f"{path}.holder.release").touch()
    assert holder.wait(timeout=30) == 0
    Path(f"{path}.holder.release").unlink()


def _written(path: Path) -> None:
    raw = _raw()
    with mx.DuckDBMetadataStore(path, hash_length=8) as store:
        store.write(raw, store.resolve_update(raw, samples=_samples()).new)


def test_waiters_are_served_in_arrival_order(tmp_path: Path) -> None:
    path, log = tmp_path / "m.duckdb", tmp_path / "order.log"
    holder = _hold(path, 60.0)
    queue = Path(f"{path}.locks")
    waiters = []
    for k in range(4):
        waiters.append(subprocess.Popen([*WORKER, "enter", str(path), str(log)]))
        # the next waiter starts once this one holds its ticket (holder + k + 1 ticket files)
        deadline = time.monotonic() + 30
        while sum(f.name.isdigit() for f in queue.iterdir()) < k + 2:
            assert time.monotonic() < deadline, "a waiter never queued"
            time.sleep(0.01)
    _release(path, holder)
    for proc in waiters:
        assert proc.wait(timeout=60) == 0
    entered = [int(line.split()[0]) for line in log.read_text().splitlines()]
    assert entered == [p.pid for p in waiters]


def test_processes_alternating_writes_and_reads_wait_boundedly(tmp_path: Path) -> None:
    path, n, iterations = tmp_path / "m.duckdb", 4, 6
    procs = [
        subprocess.Popen([*WORKER, "cycle", str(path), str(tmp_path / f"w{k}.json"), str(iterations), str(k)])
        for k in range(n)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    results = [json.loads((tmp_path / f"w{k}.json").read_text()) for k in range(n)]
    max_wait = max(max(r["waits"]) for r in results)
    max_hold = max(max(r["holds"]) for r in results)
    # Served in arrival order, a process waits at most for the n - 1 others once each.
    assert max_wait < 2 * (n - 1) * max_hold + 2.0, (max_wait, max_hold)
    raw = _raw()
    with mx.DuckDBMetadataStore(path, read_only=True) as store:
        assert store.read(raw).to_polars().height == 5_000


def test_read_only_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    _written(path)
    raw = _raw()
    for store in (
        mx.DuckDBMetadataStore(path, read_only=True, hash_length=8),
        mx.DuckDBMetadataStore(path, config={"access_mode": "READ_ONLY"}, hash_length=8),
    ):
        with store:
            assert store.list_features() == [mx.FeatureKey("raw")]
            assert store.read(raw).to_polars().height == 2
            assert store.resolve_update(raw, samples=_samples()).counts() == {
                "new": 0,
                "stale": 0,
                "orphaned": 0,
            }
            assert store.read_system("migrations") is None
            with pytest.raises(mx.StoreError, match=r"read-only \(read_only=True\).*not write"):
                store.write(raw, _samples())
            with pytest.raises(mx.StoreError, match="read-only"):
                store.delete(raw)
    with pytest.raises(mx.StoreError, match="does not exist"):
        mx.DuckDBMetadataStore(tmp_path / "nope.duckdb", read_only=True).list_features()


def test_readers_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    _written(path)
    holder = _hold(path, 30.0, read_only=True)
    try:
        start = time.monotonic()
        # outside `with`, a read opens read-only and joins the reading holder instead of queueing
        assert mx.DuckDBMetadataStore(path).list_features() == [mx.FeatureKey("raw")]
        assert time.monotonic() - start < 5.0
    finally:
        _release(path, holder)


def test_timeout_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    holder = _hold(path, 30.0)
    try:
        with (
            pytest.raises(mx.StoreError, match=rf"process {holder.pid} \(writing\) holds it.*lock_timeout"),
            mx.DuckDBMetadataStore(path, lock_timeout=0.3),
        ):
            pass
    finally:
        _release(path, holder)


def test_open_errors_say_what_is_wrong(tmp_path: Path) -> None:
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    with pytest.raises(mx.StoreError, match="it is a directory"):
        mx.DuckDBMetadataStore(folder).list_features()
    other = tmp_path / "notes.duckdb"
    other.write_text("not a database\n" * 100)
    with pytest.raises(mx.StoreError, match="exists but is not a DuckDB database") as info:
        mx.DuckDBMetadataStore(other).list_features()
    assert "lock" not in str(info.value).lower()


def test_permission_denied(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv to drop the permission override of root")
    path = tmp_path / "m.duckdb"
    _written(path)
    path.chmod(0)
    code = (
        "import metaxy_core as mx\n"
        "try:\n"
        f"    mx.DuckDBMetadataStore({str(path)!r}).list_features()\n"
        "except mx.StoreError as exc:\n"
        "    print(exc)\n"
    )
    # Root ignores file modes; without CAP_DAC_OVERRIDE it is refused like any user.
    out = subprocess.run(
        [setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "Operation not permitted" in out.stderr and "setpriv" in out.stderr:
        pytest.skip("setpriv cannot drop capabilities here")
    assert "permission denied" in out.stdout, out.stdout + out.stderr
    assert "lock" not in out.stdout.lower().replace("lock_timeout", "")
