"""SQLite store specifics: several processes on one file, hashes without an engine sha256, column forms."""

import datetime as dt
import hashlib
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.stores import _sqlite_io
from metaxy_core.stores.sqlite import SQLiteMetadataStore

DRIVERS = ["sqlite3", *(["adbc"] if _sqlite_io.adbc_available() else [])]
REPO = Path(__file__).resolve().parents[2]

# A root feature defined the same way in the test process and in the worker processes.
FEATURE = """
import sys, time
import polars as pl
import metaxy_core as mx

class Doc(mx.Feature, spec=mx.FeatureSpec(key="doc", id_columns=["doc_id"], fields=["text"])):
    doc_id: str
    run: str

def rows(prefix: str, n: int, value: str = "v") -> pl.DataFrame:
    ids = pl.int_range(n, eager=True).cast(pl.String)
    return pl.DataFrame({"doc_id": prefix + ids}).with_columns(
        run=pl.lit(value),
        metaxy_provenance_by_field=pl.struct(text=pl.lit(value) + ids),
    )
"""


def define() -> dict:
    namespace: dict = {}
    exec(FEATURE, namespace)
    return namespace


def spawn(tmp_path: Path, name: str, body: str, *args: str) -> subprocess.Popen:
    script = tmp_path / f"{name}.py"
    script.write_text(FEATURE + textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


WRITER = """
path, prefix, batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = mx.SQLiteMetadataStore(database=path, busy_timeout=120)
for b in range(batches):
    with store:
        store.write(Doc, rows(f"{prefix}{b}-", size))
print("done")
"""


def test_two_writer_processes_both_succeed_and_lose_no_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    batches, size = 8, 1_000
    writers = [spawn(tmp_path, f"w{p}", WRITER, path, p, str(batches), str(size)) for p in ("a", "b")]
    assert [finish(w).strip() for w in writers] == ["done", "done"]
    store = SQLiteMetadataStore(database=path)
    ns = define()
    with store:
        ids = store.read(ns["Doc"], columns=["doc_id"]).to_polars()["doc_id"]
    assert ids.len() == ids.n_unique() == 2 * batches * size


REWRITER = """
path, rounds, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = mx.SQLiteMetadataStore(database=path, busy_timeout=120)
print("start", flush=True)
for r in range(rounds):
    with store:
        store.write(Doc, rows("d", size, value=f"r{r}"))
print("done", flush=True)
"""


def test_a_reader_never_sees_half_a_write(tmp_path: Path) -> None:
    """A reader during full rewrites sees one whole version of every row, never a mix or a partial set."""
    path = str(tmp_path / "shared.sqlite")
    size = 30_000
    ns = define()
    store = SQLiteMetadataStore(database=path)
    with store:
        store.write(ns["Doc"], ns["rows"]("d", size, value="initial"))
    writer = spawn(tmp_path, "rewriter", REWRITER, path, "3", str(size))
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "start"
    seen: set[str] = set()
    reads = 0
    while writer.poll() is None:
        with store:
            frame = store.read(ns["Doc"], columns=["doc_id", "run"]).to_polars()
        runs = frame["run"].unique().to_list()
        assert frame.height == size
        assert len(runs) == 1, runs
        seen.add(runs[0])
        reads += 1
        time.sleep(0.01)
    finish(writer)
    assert reads >= 2
    with store:
        assert store.read(ns["Doc"], columns=["run"]).to_polars()["run"].unique().to_list() == ["r2"]
        # every superseded version went to history in the same transaction
        assert store.read(ns["Doc"], history=True).to_polars().height == 4 * size


HOLDER = """
import sqlite3
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode = WAL")
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
"""


def test_busy_timeout_zero_fails_at_once_with_a_clear_error(tmp_path: Path) -> None:
    # The lock holder is another process: within one process, SQLite's POSIX locks do not exclude.
    path = str(tmp_path / "busy.sqlite")
    ns = define()
    with SQLiteMetadataStore(database=path) as store:
        store.write(ns["Doc"], ns["rows"]("x", 3))
    holder = spawn(tmp_path, "holder", HOLDER, path)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    try:
        store = SQLiteMetadataStore(database=path, busy_timeout=0)
        start = time.monotonic()
        with pytest.raises(mx.StoreError, match=r"write\(doc\) failed in SQLiteMetadataStore.*lock"):
            store.write(ns["Doc"], ns["rows"]("x", 3))
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()
    with SQLiteMetadataStore(database=path) as store:
        assert store.write(ns["Doc"], ns["rows"]("x", 3)) == 3
        assert not store.read(ns["Doc"], history=True).is_empty()


TEXTS = [
    "",
    "plain",
    unicodedata.normalize("NFC", "café"),
    unicodedata.normalize("NFD", "café"),
    "数据版本",
    "🎬👩‍👩‍👧",
    "back\\slash 'quote' \"dq\" | pipe",
    "é" * 1500,
]


@pytest.mark.parametrize("driver", DRIVERS)
def test_hashes_equal_hashlib_on_non_ascii(tmp_path: Path, driver: str) -> None:
    class Clip(mx.Feature, spec=mx.FeatureSpec(key="clip", id_columns=["clip_id"], fields=["audio"])):
        clip_id: str

    class Echo(
        mx.Feature, spec=mx.FeatureSpec(key="echo", id_columns=["clip_id"], deps=[Clip], fields=["audio"])
    ):
        clip_id: str

    def h(*parts: str) -> str:
        return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:16]

    samples = pl.DataFrame(
        {
            "clip_id": [f"{i}-{t[:8]}" for i, t in enumerate(TEXTS)],
            C.PROVENANCE_BY_FIELD: [{"audio": t} for t in TEXTS],
        }
    )
    with SQLiteMetadataStore(database=tmp_path / "h.sqlite", driver=driver) as store:
        store.write(Clip, store.resolve_update(Clip, samples=samples).new)
        echo = store.resolve_update(Echo).new.to_polars().sort("clip_id")
        clip = store.read(Clip).to_polars().sort("clip_id")
    init = "__metaxy_initial__"
    text_of = dict(zip(samples["clip_id"], TEXTS, strict=True))
    for row in clip.iter_rows(named=True):
        text = text_of[row["clip_id"]]
        assert row[C.PROVENANCE_BY_FIELD] == {"audio": h("clip.audio", init, text)}
        assert row[C.PROVENANCE] == h("audio", row[C.PROVENANCE_BY_FIELD]["audio"])
    for up, row in zip(clip.iter_rows(named=True), echo.iter_rows(named=True), strict=True):
        expected = h("echo.audio", init, "clip.audio", up[C.PROVENANCE_BY_FIELD]["audio"])
        assert row[C.PROVENANCE_BY_FIELD] == {"audio": expected}


@pytest.mark.parametrize("driver", DRIVERS)
def test_column_types_round_trip_and_evolve(tmp_path: Path, driver: str) -> None:
    path = tmp_path / "types.sqlite"

    class Item(mx.Feature, spec=mx.FeatureSpec(key="item", id_columns=["item_id"], fields=["a"])):
        item_id: int
        when: dt.datetime | None = None
        day: dt.date | None = None
        ok: bool | None = None
        tags: list[str] | None = None
        score: float | None = None

    frame = pl.DataFrame(
        {
            "item_id": [1, 2],
            "when": [dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC), None],
            "day": [dt.date(2024, 5, 1), None],
            "ok": [True, None],
            "tags": [["x", "é"], None],
            "score": [0.5, None],
            C.PROVENANCE_BY_FIELD: [{"a": "1"}, {"a": "2"}],
        }
    )
    with SQLiteMetadataStore(database=path, driver=driver) as store:
        store.write(Item, frame)
        back = store.read(Item, columns=list(frame.columns[:-1])).to_polars().sort("item_id")
    assert back.schema == frame.drop(C.PROVENANCE_BY_FIELD).schema
    assert back.to_dicts() == frame.drop(C.PROVENANCE_BY_FIELD).to_dicts()

    # a new field and a new column later: old rows stay readable, the struct has exactly the sorted fields
    with mx.FeatureGraph().use():

        class Item2(mx.Feature, spec=mx.FeatureSpec(key="item", id_columns=["item_id"], fields=["b", "a"])):
            item_id: int
            note: str | None = None

        with SQLiteMetadataStore(database=path, driver=driver) as store:
            store.write(
                Item2,
                pl.DataFrame({"item_id": [3], "note": ["n"], C.PROVENANCE_BY_FIELD: [{"a": "3", "b": "4"}]}),
            )
            rows = store.read(Item2).to_polars().sort("item_id")
    assert rows[C.PROVENANCE_BY_FIELD].to_list() == [
        {"a": "1", "b": None},
        {"a": "2", "b": None},
        {"a": "3", "b": "4"},
    ]
    assert rows["note"].to_list() == [None, None, "n"]


def test_filters_run_in_sqlite(tmp_path: Path) -> None:
    ns = define()
    with SQLiteMetadataStore(database=tmp_path / "f.sqlite") as store:
        store.write(ns["Doc"], ns["rows"]("d", 5))
        got = store.read(ns["Doc"], filters=["doc_id >= 'd3'", "run = 'v'"], columns=["doc_id"]).to_polars()
        assert got["doc_id"].to_list() == ["d3", "d4"]
        # SQLite syntax (not polars'): the predicate reached the engine
        assert store.read(ns["Doc"], filters="substr(doc_id, 2) = '1'").to_polars().height == 1


def test_a_failed_replacement_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = define()
    store = SQLiteMetadataStore(database=tmp_path / "atomic.sqlite")
    with store:
        store.write(ns["Doc"], ns["rows"]("d", 50, value="old"))
    real_run = SQLiteMetadataStore._run

    def failing_run(self: SQLiteMetadataStore, sql: str, params: tuple = ()) -> list:
        # fail on the last step of a replacement, after history got the old rows and they were deleted
        if sql.startswith('INSERT INTO "doc" ') and "temp." in sql:
            raise RuntimeError("disk full (simulated)")
        return real_run(self, sql, params)

    monkeypatch.setattr(SQLiteMetadataStore, "_run", failing_run)
    with pytest.raises(mx.StoreError, match=r"write\(doc\) failed.*disk full"):
        store.write(ns["Doc"], ns["rows"]("d", 50, value="new"))
    monkeypatch.setattr(SQLiteMetadataStore, "_run", real_run)
    with store:
        assert store.read(ns["Doc"], columns=["run"]).to_polars()["run"].to_list() == ["old"] * 50
        assert store.read(ns["Doc"], history=True).to_polars().height == 50


@pytest.mark.parametrize("lag", ["default", "zero"])
def test_a_write_waiting_for_the_lock_during_a_checkpoint_is_not_missed(tmp_path: Path, lag: str) -> None:
    """A write stamps its rows, then waits for the write lock while another process's resolve finds
    the feature in sync and records a checkpoint. The rows commit with stamps older than that
    checkpoint; the next incremental resolve still examines them because it looks back
    ``incremental_lag`` (the default covers twice the busy timeout). With no lag it misses them:
    the race is real."""
    import threading

    from tests.core.test_incremental import build_graph, samples, settle

    g = build_graph()
    path = tmp_path / "m.sqlite"
    reader = SQLiteMetadataStore(path, busy_timeout=10)
    if lag == "zero":
        reader.incremental_lag = dt.timedelta(0)
    values = {sid: "v" for sid in "abcd"}
    with g.graph.use():
        with reader:
            settle(reader, g, values)
            # crop's own row "a" written again as it was: the next resolve examines it, finds it
            # in sync and records a new checkpoint (one that examined nothing would not).
            same = reader.read(g.crop).to_polars().filter(pl.col("sid") == "a")
            reader.write(g.crop, same.select("sid", "crop_path", C.PROVENANCE_BY_FIELD))
        writer = SQLiteMetadataStore(path, busy_timeout=10)
        with writer:
            change = writer.resolve_update(g.raw, samples=samples(values | {"b": "w"})).stale
        # Both stores are open before another process takes the write lock for 2 s.
        ready, go = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def write() -> None:
            try:
                with writer:
                    ready.set()
                    go.wait(30)
                    writer.write(g.raw, change)  # stamped now, committed once the lock is free
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        assert ready.wait(30)
        with reader:
            hold = (
                "import sqlite3, sys, time; con = sqlite3.connect(sys.argv[1], isolation_level=None); "
                "con.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(2); "
                "con.execute('ROLLBACK')"
            )
            blocker = subprocess.Popen(
                [sys.executable, "-c", hold, str(path)], stdout=subprocess.PIPE, text=True
            )
            assert blocker.stdout is not None
            assert blocker.stdout.readline().strip() == "locked"
            go.set()
            time.sleep(0.5)
            first = reader.resolve_update(g.crop)  # reads the last commit, then waits to record
            assert first.is_empty, first.counts()  # the write is not committed yet: in sync
        thread.join(30)
        assert blocker.wait(30) == 0
        assert not failures
        with reader:
            stale = reader.resolve_update(g.crop).stale.to_polars()["sid"].to_list()
            assert reader.resolve_update(g.crop, full=True).stale.to_polars()["sid"].to_list() == ["b"]
    assert stale == (["b"] if lag == "default" else [])
