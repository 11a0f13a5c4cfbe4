"""ClickHouse store specifics: atomic writes without transactions, DSN and driver errors, chDB's one
path per process, hashes equal to hashlib. The conformance suite (tests/core, tests/lineage, ...) runs on
ClickHouse through the ``clickhouse`` store factory; this file covers what only ClickHouse has."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.provenance import reference_hash
from tests.conftest import CLICKHOUSE_SERVER_DSN, _clickhouse_store

pytest.importorskip("chdb", reason='chdb is not installed (pip install "metaxy-dagster[clickhouse]")')

from metaxy_core.stores.clickhouse import ClickHouseDialect, ClickHouseMetadataStore

REPO = Path(__file__).resolve().parents[2]


def _store(tmp_path: Path, **options: Any) -> ClickHouseMetadataStore:
    store = _clickhouse_store(tmp_path, **options)
    assert isinstance(store, ClickHouseMetadataStore)
    return store


def _feature() -> type[mx.BaseFeature]:
    class Item(mx.Feature, spec=mx.FeatureSpec(key="ch/item", fields=["a"])):
        v: int

    return Item


def _rows(ids: range, version: int) -> pl.DataFrame:
    return pl.DataFrame({"sample_uid": [str(i) for i in ids]}).with_columns(
        pl.lit(version).alias("v"),
        pl.struct(a=pl.col("sample_uid") + f"-{version}").alias(C.PROVENANCE_BY_FIELD),
    )


def _state(store: mx.MetadataStore, feature: type[mx.BaseFeature]) -> tuple[int, int, int]:
    """(current rows, current rows of version 2, history rows), from two reads."""
    cur = store.read(feature, columns=["v"]).to_polars()
    hist = store.read(feature, columns=["v"], history=True).to_polars()
    return cur.height, int((cur["v"] == 2).sum()), hist.height


# -- hashing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_hashes_equal_hashlib_on_non_ascii(tmp_path: Path, algorithm: str) -> None:
    values = ["", "a", "é", "e\u0301", "日本語", "👩‍👩‍👧", "back\\slash", "quo'te", "x" * 3000]
    dialect = ClickHouseDialect(algorithm, 16)
    with _store(tmp_path) as store:
        for value in values:
            for parts in ([value], [value, None, "b"]):
                sql_parts = [dialect.literal(p) if p is not None else "NULL" for p in parts]
                got = store.executor.rows(f"SELECT {dialect.hash(sql_parts)}")[0][0]
                assert got == reference_hash(parts, algorithm, 16), (value, parts)


# -- atomic writes ----------------------------------------------------------------------------------
def test_reader_never_sees_a_partial_write(tmp_path: Path) -> None:
    """A write staged as many parts (small insert blocks) is published at once: a reader polling in another
    thread only ever sees the state before or the state after."""
    item = _feature()
    small_blocks = {"max_insert_block_size": 5_000, "min_insert_block_size_rows": 5_000}
    writer = _store(tmp_path, settings=small_blocks)
    with writer:
        writer.write(item, _rows(range(50_000), 1))
        before = _state(writer, item)
        reader = ClickHouseMetadataStore(dsn=writer.dsn)
        seen: list[tuple[int, int, int]] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def poll() -> None:
            try:
                with reader:
                    while not done.is_set():
                        seen.append(_state(reader, item))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.2)
        polls_before = len(seen)
        # some rows replace stored samples, most add new ones: any partial state shows in the counts;
        # 40 parts of 5,000 rows, so that the write lasts several of the reader's polls
        writer.write(item, _rows(range(25_000, 225_000), 2))
        polls_during = len(seen) - polls_before
        time.sleep(0.2)
        done.set()
        thread.join(timeout=60)
        after = _state(writer, item)
    assert not errors, errors
    assert before == (50_000, 0, 50_000)
    assert after == (225_000, 200_000, 250_000)
    assert polls_during >= 1, "the reader did not poll while the write ran"
    # each read is one query: the current state and the history are each either before or after
    # (two reads in a row may straddle the publish, so they are checked apart)
    assert {s[:2] for s in seen} <= {before[:2], after[:2]}, sorted({s[:2] for s in seen})
    assert {s[2] for s in seen} <= {before[2], after[2]}, sorted({s[2] for s in seen})


class _FailingInsert(Exception):
    pass


@pytest.mark.parametrize("where", ["staging-insert", "history-copy", "commit-record", "attach"])
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """A write failing at any step before it is published leaves the committed state unchanged, also
    after reopening, and no staging table or hidden history rows behind."""
    item = _feature()
    store = _store(tmp_path, settings={"max_insert_block_size": 5_000, "min_insert_block_size_rows": 5_000})
    with store:
        store.write(item, _rows(range(20_000), 1))
        store.write(item, _rows(range(10_000), 2))
        before = store.read(item).to_polars().sort("sample_uid")
        history = store.read(item, history=True).to_polars().height
        executor = store.executor
        real_insert, real_command = executor.insert, executor.command

        def insert(table: str, data: Any) -> None:
            if where == "staging-insert" and "metaxy_staging__" in table:
                real_insert(table, data.slice(0, data.num_rows // 2))  # half of the rows land, then it fails
                raise _FailingInsert("late batch rejected")
            real_insert(table, data)

        def command(sql: str) -> None:
            marker = {
                "history-copy": 'INSERT INTO "{db}"."metaxy_history__',
                "commit-record": 'INSERT INTO "{db}"."metaxy_commits"',
                "attach": "ATTACH PARTITION",
            }.get(where)
            if marker and marker.format(db=store.database) in sql:
                if where == "history-copy":
                    real_command(sql)  # the hidden history rows are written, then the write dies
                raise _FailingInsert(f"failure at {where}")
            real_command(sql)

        monkeypatch.setattr(executor, "insert", insert)
        monkeypatch.setattr(executor, "command", command)
        with pytest.raises(mx.MetaxyError):
            store.write(item, _rows(range(5_000, 40_000), 3))
        monkeypatch.undo()
        assert store.read(item).to_polars().sort("sample_uid").equals(before)
        assert store.read(item, history=True).to_polars().height == history
        leftovers = [t for t in store._tables() if t.startswith("metaxy_staging__")]
        assert leftovers == []
        hidden = store.executor.rows(
            f'SELECT count() FROM "{store.database}"."metaxy_history__ch__item" WHERE '
            '__metaxy_superseded_by NOT IN (SELECT __metaxy_write FROM "{0}"."metaxy_commits")'.format(
                store.database
            )
        )[0][0]
        assert hidden == 0
    with store:
        assert store.read(item).to_polars().sort("sample_uid").equals(before)
        # and the store still takes writes
        assert store.write(item, _rows(range(5_000, 40_000), 3)) == 35_000


@pytest.mark.parametrize("where", ["staging-insert", "attach"])
def test_failed_first_write_leaves_no_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    item = _feature()
    store = _store(tmp_path)
    with store:
        executor = store.executor
        real_insert, real_command = executor.insert, executor.command

        def insert(table: str, data: Any) -> None:
            if where == "staging-insert" and "metaxy_staging__" in table:
                real_insert(table, data.slice(0, data.num_rows // 2))
                raise _FailingInsert("late batch rejected")
            real_insert(table, data)

        def command(sql: str) -> None:
            if where == "attach" and sql.startswith("RENAME TABLE"):
                raise _FailingInsert("publish failed")
            real_command(sql)

        monkeypatch.setattr(executor, "insert", insert)
        monkeypatch.setattr(executor, "command", command)
        with pytest.raises(mx.MetaxyError):
            store.write(item, _rows(range(10_000), 1))
        monkeypatch.undo()
        assert not store.has_feature(item)
        assert store._tables() == ["metaxy_commits"]
        assert store.write(item, _rows(range(10_000), 1)) == 10_000


def test_first_write_appears_all_at_once(tmp_path: Path) -> None:
    """Before a feature's first write is published the feature does not exist; then it has every row."""
    item = _feature()
    writer = _store(tmp_path, settings={"max_insert_block_size": 5_000, "min_insert_block_size_rows": 5_000})
    seen: list[int | None] = []
    done = threading.Event()
    with writer:
        reader = ClickHouseMetadataStore(dsn=writer.dsn)

        def poll() -> None:
            with reader:
                while not done.is_set():
                    try:
                        seen.append(reader.read(item, columns=["v"]).to_polars().height)
                    except mx.FeatureNotFoundError:
                        seen.append(None)

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.2)
        writer.write(item, _rows(range(100_000), 1))
        time.sleep(0.2)
        done.set()
        thread.join(timeout=60)
    assert set(seen) == {None, 100_000}, sorted(set(seen), key=str)


KILLED_WRITER = """
import pathlib, sys, polars as pl, metaxy_core as mx
from metaxy_core import columns as C
class Item(mx.Feature, spec=mx.FeatureSpec(key="ch/item", fields=["a"])):
    v: int
def rows(ids, version):
    return pl.DataFrame({"sample_uid": [str(i) for i in ids]}).with_columns(
        pl.lit(version).alias("v"), pl.struct(a=pl.col("sample_uid") + f"-{version}").alias(C.PROVENANCE_BY_FIELD))
from metaxy_core.stores.clickhouse import ClickHouseMetadataStore
store = ClickHouseMetadataStore(dsn=sys.argv[1], settings={"max_insert_block_size": 20000,
                                                          "min_insert_block_size_rows": 20000})
with store:
    store.write(Item, rows(range(100_000), 1))
    pathlib.Path(sys.argv[2]).touch()
    while True:  # rewrite until killed
        store.write(Item, rows(range(50_000, 400_000), 2))
        store.write(Item, rows(range(100_000), 1))
"""


def test_killed_writer_leaves_a_committed_state(tmp_path: Path, graph: mx.FeatureGraph) -> None:
    """kill -9 of a process in the middle of writes: reopening shows one complete committed state."""
    path = tmp_path / "killed-chdb"
    dsn = f"chdb://{path}?database=killed"
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, dsn, str(ready)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the writer died before its first write"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    check = textwrap.dedent(
        """
        import json, sys, metaxy_core as mx
        class Item(mx.Feature, spec=mx.FeatureSpec(key="ch/item", fields=["a"])):
            v: int
        from metaxy_core.stores.clickhouse import ClickHouseMetadataStore
        with ClickHouseMetadataStore(dsn=sys.argv[1]) as store:
            cur = store.read(Item, columns=["sample_uid", "v"]).to_polars()
            left = [t for t in store._tables() if t.startswith(("metaxy_staging__", "metaxy_tmp__"))]
            print(json.dumps({"rows": cur.height, "v2": int((cur["v"] == 2).sum()), "left": left}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", check, dsn], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    import json

    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["left"] == []
    # either after a "version 1" write or after a "version 2" write, never in between
    assert (state["rows"], state["v2"]) in {(400_000, 350_000), (400_000, 300_000), (100_000, 0)}, state


# -- DSNs, drivers, chDB's one path per process -------------------------------------------------------
@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("mysql://host/db", "unknown scheme 'mysql'"),
        ("chdb://relative/path", "absolute path"),
        ("chdb:relative", "must be absolute"),
        ("clickhouse:///db", "no host"),
    ],
)
def test_bad_dsn_is_named(dsn: str, message: str) -> None:
    with pytest.raises(mx.StoreError, match=rf"ClickHouseMetadataStore: invalid dsn .*{message}"):
        ClickHouseMetadataStore(dsn=dsn)


def test_unreachable_server_names_the_dsn_without_the_password() -> None:
    pytest.importorskip("clickhouse_connect")
    store = ClickHouseMetadataStore(dsn="clickhouse://me:s3cret@127.0.0.1:1/metrics?connect_timeout=1")
    with pytest.raises(mx.StoreError) as info, store:
        pass
    text = str(info.value)
    assert "ClickHouseMetadataStore" in text
    assert "clickhouse://me:***@127.0.0.1:1/metrics" in text
    assert "s3cret" not in text
    assert "s3cret" not in repr(store)


@pytest.mark.parametrize(
    ("module", "dsn"), [("chdb", "chdb:///tmp/x"), ("clickhouse_connect", "clickhouse://h/d")]
)
def test_missing_driver_names_the_fix(monkeypatch: pytest.MonkeyPatch, module: str, dsn: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with (
        pytest.raises(
            mx.StoreError, match=r'ClickHouseMetadataStore.*pip install "metaxy-dagster\[clickhouse\]"'
        ),
        ClickHouseMetadataStore(dsn=dsn),
    ):
        pass


def test_importing_metaxy_loads_no_clickhouse_driver() -> None:
    code = (
        "import sys, metaxy_core; assert not {'chdb', 'clickhouse_connect'} & set(sys.modules), sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)


def test_second_chdb_path_in_one_process_is_a_clear_error(tmp_path: Path) -> None:
    item = _feature()
    first = _store(tmp_path)
    same_path_other_db = ClickHouseMetadataStore(
        dsn=first.dsn.split("?")[0] + f"?database=x{uuid.uuid4().hex[:8]}"
    )
    same = ClickHouseMetadataStore(dsn=first.dsn)
    other = ClickHouseMetadataStore(dsn=f"chdb://{tmp_path}/elsewhere")
    with first:
        first.write(item, _rows(range(3), 1))
        with same, same_path_other_db:  # the same path shares the engine and its data
            assert same.read(item).to_polars().height == 3
            assert not same_path_other_db.has_feature(item)
        with (
            pytest.raises(mx.StoreError, match=r"one embedded ClickHouse per process.*cannot also open"),
            other,
        ):
            pass
    assert first.read(item).to_polars().height == 3  # reopens fine after the refused one


# -- a real server ----------------------------------------------------------------------------------
@pytest.mark.skipif(
    not CLICKHOUSE_SERVER_DSN,
    reason="set METAXY_TEST_CLICKHOUSE_DSN=clickhouse://user:pw@host:8123/db to test a server",
)
def test_server_round_trip() -> None:
    item = _feature()
    assert CLICKHOUSE_SERVER_DSN is not None
    base, _, _ = CLICKHOUSE_SERVER_DSN.partition("?")
    dsn = base.rsplit("/", 1)[0] + f"/metaxy_test_{uuid.uuid4().hex[:8]}"
    store = ClickHouseMetadataStore(dsn=dsn)
    with store:
        try:
            inc = store.resolve_update(item, samples=_rows(range(10), 1))
            assert store.write(item, inc.new) == 10
            assert store.write(item, store.resolve_update(item, samples=_rows(range(5), 2)).to_process()) == 5
            assert _state(store, item) == (10, 0, 15)
            assert store.delete(item, "sample_uid = '1'") == 1
            assert store.read(item).to_polars().height == 9
        finally:
            store.executor.command(f'DROP DATABASE IF EXISTS "{store.database}"')


# -- configured by name, used by the CLI in another process -------------------------------------------
def test_cli_status_on_a_configured_chdb_store(tmp_path: Path) -> None:
    """``type = "clickhouse"`` in metaxy.toml; the pipeline writes in this process, then the ``metaxy`` CLI
    opens the same chDB path from its own process (this one has closed it by then)."""
    from tests.cli.conftest import Project, run_pipeline

    dsn = f"chdb://{tmp_path}/chdb?database=pipeline"

    class ClickHouseProject(Project):
        def store(self) -> Any:
            return ClickHouseMetadataStore(dsn=dsn)

    (tmp_path / "metaxy.toml").write_text(
        f'project = "cli-ch"\nentrypoints = ["features"]\nstore = "dev"\n\n'
        f'[stores.dev]\ntype = "clickhouse"\nconfig = {{ dsn = "{dsn}" }}\n'
    )
    project = ClickHouseProject(tmp_path)
    project.write_features()
    mx.set_config(mx.load_config(tmp_path / "metaxy.toml"))
    assert run_pipeline(project)["example/crop"] == 3
    data = project.cli_json("metadata", "status", "--format", "json", subprocess=True)
    status = {f["key"]: f for f in data["features"]}
    assert data["in_sync"] is True
    assert status["example/video"]["rows"] == 3
    assert (status["example/crop"]["new"], status["example/crop"]["stale"]) == (0, 0)


def test_unknown_dsn_options_are_refused() -> None:
    with pytest.raises(mx.StoreError, match=r"unknown option\(s\) \['databse'\]"):
        ClickHouseMetadataStore(dsn="chdb:///tmp/x?databse=typo")
    with pytest.raises(mx.StoreError, match=r"unknown option\(s\) \['compress'\]"):
        ClickHouseMetadataStore(dsn="clickhouse://h:8123/db?compress=1")


@pytest.mark.parametrize(
    ("ctype", "ok"),
    [
        ("String", True),
        ("Nullable(String)", True),
        ("LowCardinality(Nullable(String))", True),
        ("UInt32", True),
        ("Float64", False),
        ("Nullable(DateTime64(6, 'UTC'))", False),
    ],
)
def test_aggregation_member_id_types(ctype: str, ok: bool) -> None:
    assert ClickHouseDialect.text_or_integer(ctype) is ok


HOLDER = """
import pathlib, sys, time
from metaxy_core.stores.clickhouse import ClickHouseMetadataStore
with ClickHouseMetadataStore(dsn=sys.argv[1]):
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(float(sys.argv[3]))
pathlib.Path(sys.argv[4]).touch()
"""


def _hold_chdb_path(tmp_path: Path, dsn: str, seconds: float) -> tuple[subprocess.Popen[bytes], Path]:
    opened, released = tmp_path / "opened", tmp_path / "released"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, dsn, str(opened), str(seconds), str(released)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not opened.exists():
        assert holder.poll() is None, "the process holding the chDB path died"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return holder, released


def test_chdb_path_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    """Processes share a chDB path one at a time, like a DuckDB file: opening waits for the holder."""
    item = _feature()
    dsn = f"chdb://{tmp_path}/shared?database=m"
    holder, released = _hold_chdb_path(tmp_path, dsn, 1.0)
    try:
        with ClickHouseMetadataStore(dsn=dsn, lock_timeout=60) as store:
            assert released.exists()  # only got in after the holder let go
            assert store.write(item, _rows(range(3), 1)) == 3
    finally:
        holder.wait(timeout=60)


def test_chdb_lock_timeout_names_the_path(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path}/shared?database=m"
    holder, _ = _hold_chdb_path(tmp_path, dsn, 30.0)
    try:
        with (
            pytest.raises(mx.StoreError, match=r"shared'.*another process has it open.*lock_timeout"),
            ClickHouseMetadataStore(dsn=dsn, lock_timeout=0.5),
        ):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=60)


# -- parent markers, filters ------------------------------------------------------------------------
def test_parent_markers_are_published_with_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Markers live in the current table: a write failing at the attach changes neither rows nor markers."""
    from tests.engine.test_expansion_parents import _chunks, _ingest, _todo
    from tests.graphs import expansion_features

    video, chunk, _ = expansion_features()
    store = _store(tmp_path)
    with store:
        _ingest(store, video, {"a": "1", "b": "1", "c": "1"})
        todo = _todo(store.resolve_update(chunk))
        store.write(chunk, _chunks(todo, {"a": 2, "b": 1}), parents=todo)  # "c" has no chunks
        _ingest(store, video, {"a": "1", "b": "2", "c": "2"})
        todo = _todo(store.resolve_update(chunk))
        before = store.read(chunk).to_polars().sort("video_chunk_id")
        executor = store.executor
        real_command = executor.command

        def command(sql: str) -> None:
            if "ATTACH PARTITION" in sql:
                raise _FailingInsert("failure at attach")
            real_command(sql)

        monkeypatch.setattr(executor, "command", command)
        with pytest.raises(mx.MetaxyError):  # "b" loses its chunk, "c" gains two
            store.write(chunk, _chunks(todo, {"c": 2}), parents=todo)
        monkeypatch.undo()
        assert store.resolve_update(chunk).counts() == {"new": 0, "stale": 2, "orphaned": 0}
        assert store.read(chunk).to_polars().sort("video_chunk_id").equals(before)
        store.write(chunk, _chunks(todo, {"c": 2}), parents=todo)
        assert store.resolve_update(chunk).counts() == {"new": 0, "stale": 0, "orphaned": 0}
        assert sorted(store.read(chunk).to_polars()["video_chunk_id"]) == ["a_0", "a_1", "c_0", "c_1"]
        # markers never reach reads or history
        history = store.read(chunk, history=True).to_polars()
        assert "" not in history["video_chunk_id"].to_list()


def test_filter_casts_are_strict_and_keep_nulls(tmp_path: Path) -> None:
    """ClickHouse casts to Nullable(T) turn bad values into NULL; metaxy's filter casts fail instead."""

    class Tagged(mx.Feature, spec=mx.FeatureSpec(key="ch/tagged", fields=["a"])):
        tag: str | None = None

    rows = pl.DataFrame({"sample_uid": ["1", "2", "3"], "tag": ["1", None, "2"]}).with_columns(
        pl.struct(a=pl.col("sample_uid")).alias(C.PROVENANCE_BY_FIELD)
    )
    store = _store(tmp_path)
    with store:
        store.write(Tagged, rows)
        assert store.read(Tagged, filters="CAST(tag AS INT) = 1").to_polars()["sample_uid"].to_list() == ["1"]
        assert store.read(Tagged, filters="CAST(tag AS INT) IS NULL").to_polars()["sample_uid"].to_list() == [
            "2"
        ]
        store.write(Tagged, rows.head(1).with_columns(tag=pl.lit("x")))
        with pytest.raises(mx.StoreError, match="could not be converted"):
            store.read(Tagged, filters="CAST(tag AS INT) = 1")
