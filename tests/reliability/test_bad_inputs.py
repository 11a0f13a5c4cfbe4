"""Fuzzing ``write`` and ``resolve_update`` with bad inputs on every store of the conformance matrix.

Every input is either rejected with a :class:`MetaxyError` before any row lands (the store reads
back exactly as before, history included), or accepted deterministically: a store of another
backend given the same calls accepts it too and reads back the same rows and provenance.
"""

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import narwhals as nw
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import metaxy_core as mx
from metaxy_core import columns as C
from tests.conftest import STORE_FACTORIES
from tests.reliability.bad_inputs import SEED_IDS, BadInput, bad_inputs, valid_frame

FUZZ = settings(
    # bench/reliability_report.py raises this to explore further than CI does
    max_examples=int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "30")),
    deadline=None,
    derandomize=True,  # the same inputs on every CI run; bench/reliability_report.py explores further
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
VOLATILE = [C.CREATED_AT, C.UPDATED_AT, C.MATERIALIZATION_ID]
"""Stamped per write (time, random id): equal across backends only by accident."""

KNOWN_BUGS: frozenset[str] = frozenset()
"""Mutations the fuzzers leave out because a strict xfail test below pins the bug they find."""

tried: dict[str, int] = {"accepted": 0, "rejected": 0}
kinds: Counter[str] = Counter()


@pytest.fixture(autouse=True, scope="module")
def _report_tried() -> Iterator[None]:
    yield
    from tests.reliability.scenarios import summary

    print(
        "\n"
        + summary(
            "bad inputs", {"inputs": sum(tried.values()), **tried, "kinds": dict(sorted(kinds.items()))}
        )
    )


def fuzz_features() -> dict[str, type[mx.BaseFeature]]:
    """A strict feature (declared columns), an open one (any user columns) and a child of the strict one."""
    graph = mx.FeatureGraph()
    with graph.use():

        class Strict(
            mx.BaseFeature,
            spec=mx.FeatureSpec(key="fuzz/strict", id_columns=["sample_id"], fields=["a", "b"]),
        ):
            sample_id: str
            score: float
            label: str | None = None

        class Open(
            mx.BaseFeature, spec=mx.FeatureSpec(key="fuzz/open", id_columns=["sample_id"], fields=["a", "b"])
        ):
            pass

        class Child(
            mx.BaseFeature,
            spec=mx.FeatureSpec(key="fuzz/child", id_columns=["sample_id"], deps=[Strict], fields=["c"]),
        ):
            sample_id: str

    return {"strict": Strict, "open": Open, "child": Child}


@pytest.fixture
def store_pair(
    request: pytest.FixtureRequest, store_factory: Callable[..., mx.MetadataStore], tmp_path: Path
) -> Callable[[], Iterator[tuple[mx.MetadataStore, mx.MetadataStore]]]:
    """Fresh (store under test, reference store of another backend) per example, both open."""
    backend = request.node.callspec.params["store_factory"]
    others = [name for name in sorted(STORE_FACTORIES) if name != backend]
    if not others:
        pytest.skip("needs a second backend to compare with")
    reference = STORE_FACTORIES[others[0]]

    def pair() -> Iterator[tuple[mx.MetadataStore, mx.MetadataStore]]:
        with ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=tmp_path)))
            yield stack.enter_context(store_factory()), stack.enter_context(reference(folder))

    return pair


def snapshot(
    store: mx.MetadataStore, feature: type[mx.BaseFeature], *, volatile: bool
) -> pl.DataFrame | None:
    if not store.has_feature(feature):
        return None
    frame = store.read(feature, history=True, include_deleted=True).to_polars()
    if not volatile:
        frame = frame.drop(VOLATILE)
    return frame.select(sorted(frame.columns)).sort(pl.all().exclude(pl.Struct, pl.List).cast(pl.String))


def same(left: pl.DataFrame | None, right: pl.DataFrame | None, what: str) -> None:
    assert (left is None) == (right is None), what
    if left is not None and right is not None:
        assert_frame_equal(left, right, check_dtypes=False, check_column_order=False), what


def attempt(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or ("rejected", error); any exception that is not a MetaxyError fails the test."""
    try:
        return "ok", call()
    except mx.MetaxyError as exc:
        return "rejected", exc


def seed(store: mx.MetadataStore, feature: type[mx.BaseFeature]) -> None:
    store.write(feature, valid_frame(SEED_IDS))


@FUZZ
@given(bad=bad_inputs(KNOWN_BUGS), target=st.sampled_from(["strict", "open"]))
def test_write_bad_input(store_pair: Callable[..., Iterator[Any]], bad: BadInput, target: str) -> None:
    features = fuzz_features()
    feature = features[target]
    for store, reference in store_pair():
        seed(store, feature)
        seed(reference, feature)
        before = snapshot(store, feature, volatile=True)
        outcome, result = attempt(lambda s=store: s.write(feature, bad.value))
        ref_outcome, ref_result = attempt(lambda s=reference: s.write(feature, bad.value))
        tried["accepted" if outcome == "ok" else "rejected"] += 1
        kinds.update(bad.mutations or ["valid"])
        if outcome == "rejected":
            same(
                before,
                snapshot(store, feature, volatile=True),
                f"{bad}: rejected but rows changed ({result})",
            )
            assert str(result), f"{bad}: empty error message"
        assert outcome == ref_outcome, (
            f"{bad}: {type(store).__name__} {outcome} ({result}) but {type(reference).__name__} {ref_outcome} "
            f"({ref_result})"
        )
        if outcome == "ok":
            assert result == ref_result
            same(
                snapshot(store, feature, volatile=False),
                snapshot(reference, feature, volatile=False),
                str(bad),
            )


def increment_frames(increment: mx.Increment) -> dict[str, pl.DataFrame]:
    parts = {"new": increment.new, "stale": increment.stale, "orphaned": increment.orphaned}
    out = {}
    for name, part in parts.items():
        frame = part.collect() if isinstance(part, nw.LazyFrame) else part
        native = frame.to_polars()
        out[name] = native.select(sorted(native.columns)).sort("sample_id")
    return out


@FUZZ
@given(
    bad=bad_inputs(KNOWN_BUGS),
    target=st.sampled_from(["strict", "open", "child"]),
)
def test_resolve_bad_samples(store_pair: Callable[..., Iterator[Any]], bad: BadInput, target: str) -> None:
    features = fuzz_features()
    feature = features[target]
    stored = features["strict"] if target == "child" else feature
    for store, reference in store_pair():
        seed(store, stored)
        seed(reference, stored)
        before = snapshot(store, stored, volatile=True)
        outcome, result = attempt(lambda s=store: s.resolve_update(feature, samples=bad.value))
        ref_outcome, ref_result = attempt(lambda s=reference: s.resolve_update(feature, samples=bad.value))
        tried["accepted" if outcome == "ok" else "rejected"] += 1
        kinds.update(bad.mutations or ["valid"])
        same(before, snapshot(store, stored, volatile=True), f"{bad}: resolve_update changed stored rows")
        assert outcome == ref_outcome, (
            f"{bad}: {type(store).__name__} {outcome} ({result}) but {type(reference).__name__} {ref_outcome} "
            f"({ref_result})"
        )
        if target == "child" and bad.value is not None:
            assert outcome == "rejected", "samples= on a feature with deps must be refused"
        if outcome == "ok":
            mine, theirs = increment_frames(result), increment_frames(ref_result)
            for part in mine:
                assert_frame_equal(mine[part], theirs[part], check_dtypes=False), f"{bad}: {part} differs"


def test_mixed_type_pandas_column(store: mx.MetadataStore) -> None:
    feature = fuzz_features()["open"]
    native = valid_frame(SEED_IDS).to_pandas()
    native["label"] = pd.Series([1, "two", 3.5], dtype=object)
    with pytest.raises(mx.MetaxyError, match="label"):
        store.write(feature, native)
    assert not store.has_feature(feature)


CASE_BUG: dict[str, str] = {}
"""Fixed: every store rejects columns whose names differ only in case (DuckDB used to store 'Score' as
an all-NULL 'Score_1')."""


@pytest.mark.parametrize("seeded", [False, True], ids=["first-write", "later-write"])
def test_case_colliding_column_names(
    request: pytest.FixtureRequest, store: mx.MetadataStore, seeded: bool
) -> None:
    backend = request.node.callspec.params["store_factory"]
    if backend in CASE_BUG:
        request.applymarker(pytest.mark.xfail(strict=True, reason=CASE_BUG[backend]))
    feature = fuzz_features()["open"]
    if seeded:
        store.write(feature, valid_frame(SEED_IDS))
    frame = valid_frame(SEED_IDS[:1], "-v2").with_columns(pl.lit(41).alias("Score"))
    outcome, error = attempt(lambda: store.write(feature, frame))
    if outcome == "rejected":  # fine if it names the column
        assert "Score" in str(error)
        return
    row = store.read(feature, filters="sample_id = 's0'").to_polars()
    assert row.get_column("Score").to_list() == [41], f"columns after the write: {row.columns}"


NULL_DTYPE_BUG: dict[str, str] = {}
"""Fixed: Null-typed id columns of empty samples take the stored id types on every store."""


def test_empty_samples_with_null_typed_ids(request: pytest.FixtureRequest, store: mx.MetadataStore) -> None:
    backend = request.node.callspec.params["store_factory"]
    if backend in NULL_DTYPE_BUG:
        request.applymarker(pytest.mark.xfail(strict=True, reason=NULL_DTYPE_BUG[backend]))
    feature = fuzz_features()["open"]
    store.write(feature, valid_frame(SEED_IDS))
    samples = valid_frame([]).with_columns(pl.Series("sample_id", [], dtype=pl.Null))
    assert store.resolve_update(feature, samples=samples).counts() == {"new": 0, "stale": 0, "orphaned": 3}


NULL_DATA_VERSION_BUG: dict[str, str] = {}
"""Fixed: a null metaxy_data_version defaults to the provenance on every store."""


def test_null_data_version(request: pytest.FixtureRequest, store: mx.MetadataStore) -> None:
    backend = request.node.callspec.params["store_factory"]
    if backend in NULL_DATA_VERSION_BUG:
        request.applymarker(pytest.mark.xfail(strict=True, reason=NULL_DATA_VERSION_BUG[backend]))
    feature = fuzz_features()["strict"]
    frame = valid_frame(SEED_IDS).with_columns(
        pl.Series(C.DATA_VERSION, [None, "dv1", None], dtype=pl.String)
    )
    outcome, error = attempt(lambda: store.write(feature, frame))
    if outcome == "rejected":  # fine if it names the column and stored nothing
        assert C.DATA_VERSION in str(error)
        assert not store.has_feature(feature)
        return
    stored = store.read(feature).to_polars().sort("sample_id")
    expected = stored.get_column(C.PROVENANCE).to_list()
    expected[1] = "dv1"
    assert stored.get_column(C.DATA_VERSION).to_list() == expected
