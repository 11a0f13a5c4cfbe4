"""A DuckDB store reclaims the row slots its partial rewrites leave behind, inside the write."""

from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core.stores import duckdb as duckdb_store

N = 1000


def _doc() -> type[mx.BaseFeature]:
    with mx.FeatureGraph().use():

        class Doc(mx.Feature, spec=mx.FeatureSpec(key="doc", id_columns=["sample_uid"], fields=["default"])):
            pass

    return Doc


def _rows(uids: list[str], version: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_uid": uids,
            "value": [version] * len(uids),
            "metaxy_provenance_by_field": [{"default": f"{u}-{version}"} for u in uids],
        }
    )


def _slots(store: mx.DuckDBMetadataStore) -> tuple[int, int]:
    """(row slots, live rows) of the doc table."""
    con = store.connection
    slots = con.execute("SELECT estimated_size FROM duckdb_tables() WHERE table_name = 'doc'").fetchall()
    return int(slots[0][0]), int(con.execute("SELECT count(*) FROM doc").fetchall()[0][0])


def _current(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> dict[str, int]:
    frame = store.read(doc).to_polars()
    return dict(zip(frame["sample_uid"].to_list(), frame["value"].to_list(), strict=True))


UIDS = [f"s{i:04d}" for i in range(N)]


def test_vacuum_is_off_unless_configured(tmp_path: Path) -> None:
    def setting(store: mx.DuckDBMetadataStore) -> Any:
        with store:
            return store.connection.execute("SELECT current_setting('max_vacuum_tasks')").fetchall()[0][0]

    assert setting(mx.DuckDBMetadataStore(tmp_path / "a.duckdb")) == 0
    assert setting(mx.DuckDBMetadataStore(tmp_path / "b.duckdb", config={"max_vacuum_tasks": 7})) == 7
    con = duckdb.connect(str(tmp_path / "c.duckdb"))
    try:  # an external connection keeps DuckDB's own setting
        assert setting(mx.DuckDBMetadataStore(tmp_path / "c.duckdb", connection=con)) == 100
    finally:
        con.close()


def test_partial_rewrites_keep_dead_slots_bounded(tmp_path: Path) -> None:
    doc = _doc()
    store = mx.DuckDBMetadataStore(tmp_path / "m.duckdb")
    expected = dict.fromkeys(UIDS, 0)
    dead: list[int] = []
    with store:
        store.write(doc, store.resolve_update(doc, samples=_rows(UIDS, 0)).new)
        for version in range(1, 31):
            start = (version * 50) % N
            part = UIDS[start : start + 50]  # 5% of the samples per write
            store.write(doc, store.resolve_update(doc, samples=_rows(part, version)).stale)
            expected |= dict.fromkeys(part, version)
            slots, live = _slots(store)
            assert live == N
            dead.append(slots - live)
        assert _current(store, doc) == expected
        assert store.read(doc, history=True).to_polars().height == N + 30 * 50
    # Slots pile up (DuckDB's vacuum is off), never past a fifth of the rows, and are reclaimed.
    assert max(dead) > 0
    assert max(dead) <= duckdb_store._DEAD_ROW_SHARE * N + 50
    assert dead.count(0) >= 3, dead
    with store:  # reopened: the rewritten table is the table
        assert _current(store, doc) == expected
        by_version = pl.concat([_rows([u], v) for u, v in expected.items()])
        assert store.resolve_update(doc, samples=by_version).counts() == {"new": 0, "stale": 0, "orphaned": 0}


def test_hard_delete_reclaims_slots(tmp_path: Path) -> None:
    doc = _doc()
    store = mx.DuckDBMetadataStore(tmp_path / "m.duckdb")
    with store:
        store.write(doc, _rows(UIDS, 0))
        store.delete(doc, filters=["sample_uid < 's0500'"], soft=False)
        assert _slots(store) == (N // 2, N // 2)
        assert sorted(_current(store, doc)) == UIDS[N // 2 :]


def test_failed_reclaim_keeps_the_committed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    doc = _doc()
    store = mx.DuckDBMetadataStore(tmp_path / "m.duckdb")
    monkeypatch.setattr(duckdb_store, "_DEAD_ROW_SHARE", 0.0)  # every partial rewrite reclaims
    with store:
        store.write(doc, _rows(UIDS, 0))
        store.write(doc, _rows(UIDS[:10], 1))
        assert _slots(store) == (N, N)  # reclaimed
        run = store._run

        def failing(sql: str, params: Any = None) -> Any:
            if sql.startswith("ALTER TABLE") and "RENAME" in sql:
                raise duckdb.IOException("disk full (injected)")
            return run(sql, params)

        monkeypatch.setattr(store, "_run", failing)
        store.write(doc, _rows(UIDS[10:20], 2))  # the write itself succeeds
        monkeypatch.setattr(store, "_run", run)
        assert "reclaiming deleted row slots failed" in caplog.text
        expected = dict.fromkeys(UIDS, 0) | dict.fromkeys(UIDS[:10], 1) | dict.fromkeys(UIDS[10:20], 2)
        assert _current(store, doc) == expected
        assert store.read(doc, history=True).to_polars().height == N + 20
        assert not [
            t
            for (t,) in store.connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()
            if "rewrite" in t
        ]
        store.write(doc, _rows(UIDS[20:30], 3))  # the next write reclaims
        assert _slots(store) == (N, N)
