"""Per-feature sync status: how many samples are new, stale or orphaned, counted inside the store.

Root features take their expected samples from the caller (``resolve_update(samples=...)``), so
without samples their new and orphaned samples are unknown: their status is ``root`` with the
stored row count. Rows written under an older feature version (a field's ``code_version`` was bumped
since) are counted as stale all the same, since every one of them will be recomputed. Pass
``samples={key: frame}`` to count roots exactly like the others.

>>> import metaxy_core as mx
>>> with mx.FeatureGraph().use():
...     class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video", id_columns=["id"])):
...         id: str
...     class Stt(mx.BaseFeature, spec=mx.FeatureSpec(key="stt", id_columns=["id"], deps=[Video])):
...         id: str
...     [(s.key, s.state, s.rows, s.new) for s in mx.feature_status(mx.InMemoryMetadataStore())]
[('video', 'root', 0, None), ('stt', 'in sync', 0, 0)]
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import narwhals as nw

from metaxy_core import columns as C
from metaxy_core.graph import FeatureGraph
from metaxy_core.keys import FeatureKey

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore


@dataclass(frozen=True)
class FeatureStatus:
    key: str
    version: str
    root: bool
    rows: int
    """Current (not deleted) rows stored for the feature."""
    new: int | None
    """``None`` for a root feature whose samples were not given."""
    stale: int | None
    """For a root without samples: rows written under an older feature version (all will be recomputed)."""
    orphaned: int | None

    @property
    def state(self) -> str:
        """``root`` (samples not compared), ``in sync`` or ``out of sync``."""
        if not self.in_sync:
            return "out of sync"
        return "root" if self.new is None else "in sync"

    @property
    def in_sync(self) -> bool:
        return not (self.new or self.stale or self.orphaned)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


def _count(frame: Any) -> int:
    if isinstance(frame, nw.LazyFrame):
        return int(frame.select(nw.len()).collect().item())
    return len(frame)


def feature_status(
    store: "MetadataStore",
    features: Sequence[Any] | None = None,
    *,
    graph: FeatureGraph | None = None,
    samples: Mapping[Any, Any] | None = None,
    on_feature: Callable[[str], None] | None = None,
) -> list[FeatureStatus]:
    """Status of ``features`` (keys or classes; default: all) in topological order.

    Counts come from ``store.resolve_update(F, lazy=True).counts()``, so they are computed in the
    store's engine. ``on_feature(key)`` is called after each feature (for progress bars).
    """
    graph = graph or FeatureGraph.get_active()
    wanted = [graph.get_feature(f).spec.key for f in features] if features else None
    given = {FeatureKey(graph.get_feature(k).spec.key): v for k, v in (samples or {}).items()}
    result: list[FeatureStatus] = []
    with store:
        for key in graph.topological_order():
            if wanted is not None and key not in wanted:
                continue
            cls = graph.get_feature(key)
            rows = _count(store.read(cls, lazy=True)) if store.has_feature(cls) else 0
            is_root = not cls.spec.deps
            if is_root and key not in given:
                # Without samples only rows stamped with an older feature version are known to be stale.
                outdated = (
                    _count(
                        store.read(cls, filters=nw.col(C.FEATURE_VERSION) != cls.feature_version(), lazy=True)
                    )
                    if rows
                    else 0
                )
                counts: dict[str, int | None] = {"new": None, "stale": outdated, "orphaned": None}
            else:
                inc = store.resolve_update(cls, samples=given.get(key), lazy=True)
                counts = dict(inc.counts())
            result.append(
                FeatureStatus(
                    key=str(key),
                    version=graph.feature_version(key, store.hash_length),
                    root=is_root,
                    rows=rows,
                    new=counts["new"],
                    stale=counts["stale"],
                    orphaned=counts["orphaned"],
                )
            )
            if on_feature is not None:
                on_feature(str(key))
    return result
