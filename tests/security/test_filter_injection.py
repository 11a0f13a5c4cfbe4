"""Filter strings are parsed, never spliced into SQL: hostile strings are rejected on every store with
a FilterError, and the store is left exactly as it was."""

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C

from .conftest import clip_rows, snapshot

HOSTILE = {
    "stacked-drop": "true); DROP TABLE victim; --",
    "stacked-select": "1=1; SELECT 1",
    "trailing-delete": "clip_id = 'a'; DELETE FROM media__clip",
    "subquery": "(SELECT count(*) FROM victim) > 0",
    "in-subquery": "split IN (SELECT split FROM victim)",
    "exists": "clip_id = 'a' OR EXISTS (SELECT 1 FROM victim)",
    "union": "split = 'x' UNION SELECT 1",
    "read-csv": "read_csv('/etc/passwd') IS NOT NULL",
    "read-text": "read_text('/etc/hostname') IS NOT NULL",
    "commit": "COMMIT",
    "commit-after": "true; COMMIT",
    "attach": "ATTACH '/tmp/metaxy-evil.db' AS evil",
    "drop": "DROP TABLE victim",
    "delete": "DELETE FROM media__clip",
    "install": "INSTALL httpfs",
    "set": "SET threads = 1",
    "copy": "COPY (SELECT 1) TO '/tmp/metaxy-evil.csv'",
    "pg-read-file": "pg_read_file('/etc/passwd') <> ''",
    "clickhouse-file": "file('/etc/passwd') <> ''",
    "sqlite-load-extension": "load_extension('evil') IS NULL",
    "getenv": "getenv('HOME') <> ''",
    "placeholder": "clip_id = ?",
    "star": "*",
    "unknown-column": "secret = 1",
    "qualified-column": "victim.x = 1",
}

Operation = Callable[[mx.MetadataStore, type[mx.BaseFeature], str], Any]

OPERATIONS: dict[str, Operation] = {
    "read": lambda s, f, bad: s.read(f, filters=bad),
    "read-lazy": lambda s, f, bad: s.read(f, filters=[bad], lazy=True),
    "resolve": lambda s, f, bad: s.resolve_update(f, samples=clip_rows(), filters=bad),
    "soft-delete": lambda s, f, bad: s.delete(f, bad),
    "hard-delete": lambda s, f, bad: s.delete(f, ["clip_id = 'a'", bad], soft=False),
}


def _victim(store: mx.MetadataStore) -> Callable[[], bool]:
    """A bystander table in the store's own database (DuckDB), or just a no-op check elsewhere."""
    if isinstance(store, mx.DuckDBMetadataStore):
        store.connection.execute("CREATE TABLE IF NOT EXISTS victim AS SELECT 'x' AS split")
        return lambda: store.connection.execute("SELECT count(*) FROM victim").fetchone() == (1,)
    return lambda: True


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_hostile_filters_are_rejected_and_change_nothing(
    store: mx.MetadataStore, stored_clip: type[mx.BaseFeature], operation: str
) -> None:
    victim_intact = _victim(store)
    before = snapshot(store, stored_clip)
    for name, bad in HOSTILE.items():
        with pytest.raises(mx.FilterError) as info:
            OPERATIONS[operation](store, stored_clip, bad)
        message = str(info.value)
        assert repr(bad) in message or "secret" in message or "victim" in message, name
        assert victim_intact(), f"{name}: the bystander table was touched"
        assert store.list_features() == [stored_clip.spec.key], name
        assert snapshot(store, stored_clip).equals(before), f"{name}: stored rows changed"


def test_error_names_the_offending_part(store: mx.MetadataStore, stored_clip: type[mx.BaseFeature]) -> None:
    with pytest.raises(
        mx.FilterError, match=r"function read_text\(\) is not allowed.*expressions over the feature"
    ):
        store.read(stored_clip, filters="read_text('/etc/hostname') IS NOT NULL")
    with pytest.raises(mx.FilterError, match=r"'\(SELECT COUNT\(\*\) FROM victim\)' is a subquery"):
        store.read(stored_clip, filters="(SELECT count(*) FROM victim) > 0")
    with pytest.raises(mx.FilterError, match=r"contains ';'"):
        store.read(stored_clip, filters="1=1; SELECT 1")
    with pytest.raises(
        mx.FilterError, match=r"unknown column 'secret'. Available columns: clip_id, split, n_frames"
    ):
        store.read(stored_clip, filters="secret = 1")
    with pytest.raises(mx.FilterError, match=r"COMMIT.*is not allowed in a filter"):
        store.read(stored_clip, filters="COMMIT")


def test_hostile_dependency_filters_are_rejected(
    store: mx.MetadataStore, stored_clip: type[mx.BaseFeature]
) -> None:
    class Caption(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="media/caption",
            id_columns=["clip_id"],
            deps=[mx.FeatureDep(feature=stored_clip, filters=["true); DROP TABLE victim; --"])],
        ),
    ):
        clip_id: str

    victim_intact = _victim(store)
    before = snapshot(store, stored_clip)
    with pytest.raises(mx.FilterError, match="DROP TABLE victim"):
        store.resolve_update(Caption)
    assert victim_intact()
    assert snapshot(store, stored_clip).equals(before)


def test_in_memory_errors_do_not_dump_the_query_plan(
    store: mx.MetadataStore, stored_clip: type[mx.BaseFeature]
) -> None:
    """A filter that is well-formed but ill-typed fails with a short message on every store."""
    for ill_typed in ["lower(n_frames) = 'x'", "split > 1"]:
        with pytest.raises(mx.FilterError, match=r"does not fit the column types") as info:
            store.read(stored_clip, filters=ill_typed)
        assert "\n" not in str(info.value)
        assert "plan" not in str(info.value)
    # a value that only fails on the data itself is a store error, still without the plan
    with pytest.raises(mx.MetaxyError, match=r"(?i)conver") as info:
        store.read(stored_clip, filters="CAST(split AS INT) = 1")
    for plan_marker in ("Resolved plan", "error occurred", "FILTER [", "DF ["):
        assert plan_marker not in str(info.value)


# -- delete needs a filter or all_rows=True ---------------------------------------------------------
@pytest.mark.parametrize("nothing", [None, "", "   ", []], ids=["none", "empty", "blank", "empty-list"])
def test_delete_without_a_filter_deletes_nothing(
    store: mx.MetadataStore, stored_clip: type[mx.BaseFeature], nothing: Any
) -> None:
    before = snapshot(store, stored_clip)
    with pytest.raises(mx.FilterError, match=r"delete\(media/clip\) got no filter.*all_rows=True"):
        store.delete(stored_clip, nothing)
    assert snapshot(store, stored_clip).equals(before)
    assert store.delete(stored_clip, all_rows=True, soft=False) == 6
    assert store.read(stored_clip, include_deleted=True).to_polars().height == 0


def test_failed_delete_keeps_rows(store: mx.MetadataStore, stored_clip: type[mx.BaseFeature]) -> None:
    before = snapshot(store, stored_clip)
    with pytest.raises(mx.FilterError):
        store.delete(stored_clip, ["clip_id = 'a'", "nope = 1"])
    after = snapshot(store, stored_clip)
    assert after.equals(before)
    assert after.filter(pl.col(C.DELETED_AT).is_not_null()).height == 0
