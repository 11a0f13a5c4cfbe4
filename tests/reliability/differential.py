"""A seeded random workload replayed on several stores, with every answer compared across them.

The graph covers each lineage (identity, expansion, aggregation), field-level deps and a code
version that can be bumped mid-run (two graph versions with the same keys). A step changes the
root samples, resolves and writes a downstream feature (sometimes filtered, sometimes with custom
data versions), switches graph version, or soft/hard deletes rows. After each step the caller
compares increments and stored rows across stores: they must match value for value, with every
hash string byte-identical.
"""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import narwhals as nw
import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C


@dataclass(frozen=True)
class DiffGraph:
    raw: type[mx.BaseFeature]
    crop: type[mx.BaseFeature]
    chunk: type[mx.BaseFeature]
    faces: type[mx.BaseFeature]
    summary: type[mx.BaseFeature]

    @property
    def features(self) -> list[type[mx.BaseFeature]]:
        return [self.raw, self.crop, self.chunk, self.faces, self.summary]

    @property
    def downstream(self) -> list[type[mx.BaseFeature]]:
        return self.features[1:]


FILTER_COLUMN = {
    "diff/raw": "video_id",
    "diff/crop": "video_id",
    "diff/chunk": "video_id",
    "diff/faces": "chunk_id",
}
FILTER_COLUMN["diff/summary"] = "grp"


def build_graph(crop_frames: str = "1", raw_audio: str = "1") -> DiffGraph:
    """raw -> crop (identity), raw -> chunk (expansion) -> faces (frames only), raw -> summary (aggregation)."""
    graph = mx.FeatureGraph()
    with graph.use():

        class Raw(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="diff/raw",
                id_columns=["video_id"],
                fields=[mx.FieldSpec("audio", code_version=raw_audio), "frames"],
            ),
        ):
            video_id: str
            grp: str
            path: str

        class Crop(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="diff/crop",
                id_columns=["video_id"],
                deps=[Raw],
                fields=["audio", mx.FieldSpec("frames", code_version=crop_frames)],
            ),
        ):
            video_id: str
            crop_path: str

        class Chunk(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="diff/chunk",
                id_columns=["chunk_id"],
                deps=[mx.FeatureDep(feature=Raw, lineage=mx.LineageRelationship.expansion(on=["video_id"]))],
                fields=["audio", "frames"],
            ),
        ):
            video_id: str
            chunk_id: str

        class Faces(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="diff/faces",
                id_columns=["chunk_id"],
                deps=[Chunk],
                fields=[mx.FieldSpec("faces", deps=[mx.FieldDep(feature=Chunk, fields=["frames"])])],
            ),
        ):
            chunk_id: str
            num_faces: int

        class Summary(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="diff/summary",
                id_columns=["grp"],
                deps=[mx.FeatureDep(feature=Raw, lineage=mx.LineageRelationship.aggregation(on=["grp"]))],
                fields=["embedding"],
            ),
        ):
            grp: str
            size: int

    return DiffGraph(Raw, Crop, Chunk, Faces, Summary)


def to_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    return frame.to_polars() if isinstance(frame, nw.DataFrame) else frame


def canonical(frame: Any, keys: Sequence[str], drop: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows as dicts in key order, columns sorted: equal lists mean equal values, strings byte for byte."""
    native = to_polars(frame).drop(drop, strict=False)
    native = native.select(sorted(native.columns))
    scalar = [c for c, t in native.schema.items() if not isinstance(t, pl.Struct | pl.List) and c not in keys]
    order = [k for k in keys if k in native.columns] + scalar  # a total order: ties cannot reorder rows
    return native.sort(order, nulls_last=True).to_dicts() if order else native.to_dicts()


@dataclass
class Workload:
    """The random walk; ``apply`` runs one step on every store through ``each`` and returns what to compare."""

    seed: int
    graphs: list[DiffGraph] = field(
        default_factory=lambda: [build_graph(), build_graph(crop_frames="2"), build_graph(raw_audio="2")]
    )
    version: int = 0
    samples: dict[str, dict[str, str]] = field(default_factory=dict)
    counter: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def graph(self) -> DiffGraph:
        return self.graphs[self.version]

    # -- the root samples --------------------------------------------------------------------------
    def _mutate_samples(self) -> None:
        rng = self.rng
        for _ in range(rng.randint(0, 6) if self.samples else 8):
            self.counter += 1
            vid = f"v{self.counter:03d}"
            self.samples[vid] = {
                "grp": rng.choice("ABC"),
                "audio": f"a{rng.random():.6f}",
                "frames": f"f{rng.random():.6f}",
            }
        for vid in rng.sample(sorted(self.samples), k=min(len(self.samples), rng.randint(0, 3))):
            which = rng.choice(["audio", "frames", "both", "grp"])
            if which == "grp":
                self.samples[vid]["grp"] = rng.choice("ABC")
            for f in ["audio", "frames"] if which == "both" else [which] if which != "grp" else []:
                self.samples[vid][f] = f"{f[0]}{rng.random():.6f}"
        for vid in rng.sample(sorted(self.samples), k=min(len(self.samples) // 4, rng.randint(0, 2))):
            del self.samples[vid]

    def samples_frame(self) -> pl.DataFrame:
        ids = sorted(self.samples)
        return pl.DataFrame(
            {
                "video_id": ids,
                "grp": [self.samples[v]["grp"] for v in ids],
                "path": [f"{v}.mp4" for v in ids],
                C.PROVENANCE_BY_FIELD: [
                    {"audio": self.samples[v]["audio"], "frames": self.samples[v]["frames"]} for v in ids
                ],
            },
            schema={
                "video_id": pl.String,
                "grp": pl.String,
                "path": pl.String,
                C.PROVENANCE_BY_FIELD: pl.Struct({"audio": pl.String, "frames": pl.String}),
            },
        )

    # -- filters ----------------------------------------------------------------------------------
    def _maybe_filter(self, feature: type[mx.BaseFeature]) -> Any:
        rng = self.rng
        if rng.random() < 0.6:
            return None
        column = FILTER_COLUMN[str(feature.spec.key)]
        if column == "grp":
            value = rng.choice("ABC")
            return f"grp <> '{value}'" if rng.random() < 0.5 else nw.col("grp") != value
        pivot = f"v{rng.randint(1, max(self.counter, 1)):03d}"
        if rng.random() < 0.5:
            return f"{column} >= '{pivot}'"
        return nw.col(column) < pivot

    # -- steps ------------------------------------------------------------------------------------
    def step(self) -> str:
        """Choose the next step (the same for every store) and describe it."""
        rng = self.rng
        g = self.graph
        roll = rng.random()
        if roll < 0.25 or not self.samples:
            self._mutate_samples()
            return "root"
        if roll < 0.32:
            self.version = rng.choice([v for v in range(len(self.graphs)) if v != self.version])
            return f"graph v{self.version}"
        if roll < 0.42:
            return "soft_delete" if rng.random() < 0.5 else "hard_delete"
        return str(rng.choice(g.downstream).spec.key)

    def delete_target(self) -> tuple[type[mx.BaseFeature], str]:
        rng = self.rng
        feature = rng.choice(self.graph.features)
        column = FILTER_COLUMN[str(feature.spec.key)]
        if column == "grp":
            return feature, f"grp = '{rng.choice('ABC')}'"
        ids = sorted(self.samples) or ["v000"]
        picked = rng.sample(ids, k=min(len(ids), rng.randint(1, 3)))
        if column == "chunk_id":
            return feature, " OR ".join(f"chunk_id LIKE '{v}-%'" for v in picked)
        return feature, f"video_id IN ({', '.join(repr(v) for v in picked)})"


def rows_to_write(workload: Workload, feature: type[mx.BaseFeature], todo: pl.DataFrame) -> pl.DataFrame:
    """What a pipeline step computes from its increment rows (deterministic, so every store gets the same)."""
    g = workload.graph
    key = str(feature.spec.key)
    prov = [C.PROVENANCE_BY_FIELD, C.PROVENANCE]
    if key == "diff/crop":
        out = todo.select("video_id", *prov).with_columns((pl.col("video_id") + ".crop").alias("crop_path"))
        if workload.rng.random() < 0.4:
            # Early cutoff: the frames output did not change, so its data version stays put.
            out = out.with_columns(
                pl.struct(
                    audio=pl.col(C.PROVENANCE_BY_FIELD).struct.field("audio"),
                    frames=pl.lit("frames-unchanged"),
                ).alias(C.DATA_VERSION_BY_FIELD)
            )
        return out
    if key == "diff/chunk":
        parts = []
        for row in todo.iter_rows(named=True):
            n = 1 + sum(map(ord, row["video_id"] + row[C.PROVENANCE])) % 3
            parts.append(
                pl.DataFrame(
                    {
                        "video_id": [row["video_id"]] * n,
                        "chunk_id": [f"{row['video_id']}-{i}" for i in range(n)],
                        C.PROVENANCE_BY_FIELD: [row[C.PROVENANCE_BY_FIELD]] * n,
                        C.PROVENANCE: [row[C.PROVENANCE]] * n,
                    }
                )
            )
        return pl.concat(parts)
    if key == "diff/faces":
        return todo.select("chunk_id", *prov).with_columns(num_faces=pl.col("chunk_id").str.len_chars() % 5)
    if key == "diff/summary":
        return todo.select("grp", *prov).with_columns(size=pl.lit(1))
    assert feature is g.raw
    return todo.select("video_id", "grp", "path", *prov)


Each = Callable[[Callable[[mx.MetadataStore], Any]], dict[str, Any]]
