"""Every store in the conformance matrix answers a random workload identically (SPEC: one semantics).

New backends join automatically: the test opens one store per entry of ``STORE_FACTORIES``.
"""

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from tests.conftest import STORE_FACTORIES
from tests.reliability.differential import Workload, canonical, rows_to_write, to_polars
from tests.reliability.scenarios import summary

STEPS = int(os.environ.get("RELIABILITY_DIFF_STEPS", "40"))
SEEDS = [int(s) for s in os.environ.get("RELIABILITY_DIFF_SEEDS", "1,2,3").split(",")]
VOLATILE = [C.CREATED_AT, C.UPDATED_AT, C.MATERIALIZATION_ID, C.DELETED_AT]
"""Per-write stamps (clock, random id); deletion is compared as a flag instead of a time."""


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, mx.MetadataStore]]:
    with ExitStack() as stack:
        opened = {}
        for name, factory in sorted(STORE_FACTORIES.items()):
            folder = tmp_path / name
            folder.mkdir()
            try:
                opened[name] = stack.enter_context(factory(folder))
            except pytest.skip.Exception:
                continue  # driver or server absent: compare the others
        if len(opened) < 2:
            pytest.skip("needs at least two backends")
        yield opened


class Differ:
    """Runs one call on every store and insists on the same answer."""

    def __init__(self, stores: dict[str, mx.MetadataStore]) -> None:
        self.stores = stores
        self.first = next(iter(stores))
        self.comparisons = 0
        self.where = ""

    def each(self, call: Callable[[mx.MetadataStore], Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, store in self.stores.items():
            try:
                results[name] = call(store)
            except mx.MetaxyError as exc:
                results[name] = exc
        kinds = {name: type(r).__name__ for name, r in results.items() if isinstance(r, Exception)}
        if (kinds and len(kinds) != len(results)) or len(set(kinds.values())) > 1:
            raise AssertionError(f"{self.where}: stores disagree on failing: {results}")
        return results

    def agree(self, answers: dict[str, Any], what: str) -> None:
        self.comparisons += 1
        reference = answers[self.first]
        for name, answer in answers.items():
            if answer != reference:
                detail = _first_difference(reference, answer)
                raise AssertionError(f"{self.where}: {what}: {name} differs from {self.first}: {detail}")


def _first_difference(left: Any, right: Any) -> str:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                return f"[{key}] " + _first_difference(left.get(key), right.get(key))
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return f"{len(left)} rows vs {len(right)}"
        for a, b in zip(left, right, strict=True):
            if a != b:
                return f"{a} vs {b}"
    return f"{left!r} vs {right!r}"


def increment_rows(increment: mx.Increment) -> dict[str, list[dict[str, Any]]]:
    return {part: canonical(getattr(increment, part), keys=[]) for part in ("new", "stale", "orphaned")}


def stored_rows(store: mx.MetadataStore, feature: type[mx.BaseFeature]) -> dict[str, Any]:
    if not store.has_feature(feature):
        return {"current": None, "history": None}
    keys = list(feature.spec.id_columns)

    def rows(**options: Any) -> list[dict[str, Any]]:
        frame = to_polars(store.read(feature, include_deleted=True, **options))
        frame = frame.with_columns(frame.get_column(C.DELETED_AT).is_not_null().alias("deleted"))
        return canonical(frame, keys, drop=VOLATILE)

    return {"current": rows(), "history": rows(history=True)}


def test_stores_agree(stores: dict[str, mx.MetadataStore], seed: int) -> None:
    differ = Differ(stores)
    workload = Workload(seed)
    tally: Counter[str] = Counter()
    for number in range(STEPS):
        action = workload.step()
        tally[action.split(" ")[0]] += 1
        g = workload.graph
        differ.where = f"seed {seed} step {number} ({action}, graph v{workload.version})"
        if action in ("soft_delete", "hard_delete"):
            feature, where = workload.delete_target()
            differ.where += f" {feature.spec.key} WHERE {where}"
            soft = action == "soft_delete"
            counts = differ.each(lambda s, f=feature, w=where, soft=soft: s.delete(f, w, soft=soft))
            differ.agree(counts, "deleted row count")
            tally["rows deleted"] += counts[differ.first] if isinstance(counts[differ.first], int) else 0
        elif action == "root" or action.startswith("diff/"):
            feature = g.raw if action == "root" else next(f for f in g.features if str(f.spec.key) == action)
            options: dict[str, Any] = {"filters": workload._maybe_filter(feature)}
            if feature is g.raw:
                options["samples"] = workload.samples_frame()
            differ.where += f" filters={options['filters']!r}"
            increments = differ.each(lambda s, f=feature, o=options: s.resolve_update(f, **o))
            if isinstance(increments[differ.first], Exception):
                continue
            differ.agree({n: increment_rows(i) for n, i in increments.items()}, "increment")
            todo = increments[differ.first].to_process()
            if todo.height:
                frame = rows_to_write(workload, feature, todo)
                differ.agree(differ.each(lambda s, f=feature, fr=frame: s.write(f, fr)), "written row count")
                tally["rows written"] += frame.height
            orphans = to_polars(increments[differ.first].orphaned)
            if orphans.height and feature is g.raw and workload.rng.random() < 0.5:
                listed = ", ".join(repr(v) for v in orphans.get_column("video_id").to_list())
                differ.each(lambda s, f=feature, w=f"video_id IN ({listed})": s.delete(f, w, soft=False))
        for feature in g.features:
            differ.agree(
                differ.each(lambda s, f=feature: stored_rows(s, f)), f"stored rows of {feature.spec.key}"
            )
    figures = {"steps": STEPS, "stores": sorted(stores), "comparisons": differ.comparisons, **tally}
    print("\n" + summary(f"differential seed {seed}", figures))
    assert tally["rows written"] > 0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed", SEEDS)
