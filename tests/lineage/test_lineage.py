"""Lineage and dependency options on every store: expansion, aggregation, optional deps, columns, filters."""

import hashlib
import random

import narwhals as nw
import polars as pl
import pytest

import metaxy_core as mx
from tests.graphs import expansion_features as define_video_graph

PBF = "metaxy_provenance_by_field"


def h(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def sync_root(
    store: mx.MetadataStore, feature: type[mx.BaseFeature], samples: pl.DataFrame
) -> dict[str, int]:
    inc = store.resolve_update(feature, samples=samples)
    counts = inc.counts()
    for part in (inc.new, inc.stale):
        if len(part):
            store.write(feature, part)
    return counts


# --------------------------------------------------------------------------------------------------
# expansion: the reference example, step by step
# --------------------------------------------------------------------------------------------------
VIDEOS = pl.DataFrame(
    {
        "video_id": [1, 2, 3],  # ints on purpose: coerced losslessly to the declared str
        "path": ["video1.mp4", "video2.mp4", "video3.mp4"],
        PBF: [
            {"audio": "v1", "frames": "v1"},
            {"audio": "v2", "frames": "v2"},
            {"audio": "v3", "frames": "v3"},
        ],
    }
)


def chunk_rows(parent: dict, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "video_id": [parent["video_id"]] * n,
            "video_chunk_id": [f"{parent['video_id']}_{i}" for i in range(n)],
            "path": [f"{parent['video_id']}_{i}.mp4" for i in range(n)],
            PBF: [parent[PBF]] * n,
            "metaxy_provenance": [parent["metaxy_provenance"]] * n,
        }
    )


def run_pipeline(store, features, chunks_per_video: dict[str, int]) -> dict[str, dict[str, int]]:
    video, chunk, faces = features
    seen = {"video": sync_root(store, video, VIDEOS)}
    inc = store.resolve_update(chunk)
    seen["chunk"] = inc.counts()
    seen["chunk_changed"] = sorted({f for fs in inc.stale.to_polars()["metaxy_changed_fields"] for f in fs})
    for row in inc.to_process().iter_rows(named=True):
        store.write(chunk, nw.from_native(chunk_rows(row, chunks_per_video[row["video_id"]])))
    inc = store.resolve_update(faces)
    seen["faces"] = inc.counts()
    rows = inc.to_process()
    if len(rows):
        store.write(faces, rows.select("video_chunk_id", PBF, "metaxy_provenance", num_faces=pl.lit(2)))
    return seen


@pytest.fixture
def hash8():
    mx.set_config(mx.load_config(hash_length=8))


@pytest.fixture
def store8(store_factory, hash8):
    """A store at hash length 8 (stores take the length from whoever builds them)."""
    with store_factory(hash_length=8) as built:
        yield built


def test_expansion_story(store8):
    store = store8
    with mx.FeatureGraph().use():
        v1 = define_video_graph("1")
    assert v1[0].feature_version() == "d842b740"
    assert v1[1].feature_version() == "7dc3712a"
    sizes = {"1": 5, "2": 3, "3": 3}

    first = run_pipeline(store, v1, sizes)
    assert first["video"] == {"new": 3, "stale": 0, "orphaned": 0}
    assert first["chunk"] == {"new": 3, "stale": 0, "orphaned": 0}  # parent granularity
    assert first["faces"] == {"new": 11, "stale": 0, "orphaned": 0}
    assert store.read(v1[1]).to_polars().height == 11

    rerun = run_pipeline(store, v1, sizes)
    assert rerun["video"] == rerun["chunk"] == rerun["faces"] == {"new": 0, "stale": 0, "orphaned": 0}

    with mx.FeatureGraph().use():
        v2 = define_video_graph("2")
    assert v2[0].feature_version() == "6e5a4ab8"
    assert v2[1].feature_version() == "504507a9"
    # faces must report 0/0/0 before, during and after the re-run of its upstreams
    assert store.resolve_update(v2[2]).counts() == {"new": 0, "stale": 0, "orphaned": 0}
    bumped = run_pipeline(store, v2, sizes)
    assert bumped["video"] == {"new": 0, "stale": 3, "orphaned": 0}
    assert bumped["chunk"] == {"new": 0, "stale": 3, "orphaned": 0}
    assert bumped["chunk_changed"] == ["audio"]
    assert bumped["faces"] == {"new": 0, "stale": 0, "orphaned": 0}
    final = run_pipeline(store, v2, sizes)
    assert final["chunk"] == final["faces"] == {"new": 0, "stale": 0, "orphaned": 0}


def test_expansion_write_replaces_all_children_of_a_parent(store):
    video, chunk, _faces = define_video_graph("1")
    sync_root(store, video, VIDEOS)
    parents = {r["video_id"]: r for r in store.resolve_update(chunk).new.to_polars().iter_rows(named=True)}
    for row in parents.values():
        store.write(chunk, chunk_rows(row, 4))
    assert store.read(chunk).to_polars().height == 12

    # re-expanding video 2 into fewer chunks leaves no surplus chunk visible
    store.write(chunk, chunk_rows(parents["2"], 2))
    current = store.read(chunk).to_polars()
    assert current.height == 10
    assert sorted(current.filter(pl.col("video_id") == "2")["video_chunk_id"]) == ["2_0", "2_1"]
    assert store.resolve_update(chunk).counts() == {"new": 0, "stale": 0, "orphaned": 0}
    # the replaced children are kept as history
    assert store.read(chunk, history=True).to_polars().height == 14


def test_expansion_parent_vanishes_and_any_child_difference_is_stale(store):
    video, chunk, _faces = define_video_graph("1")
    sync_root(store, video, VIDEOS)
    parents = {r["video_id"]: r for r in store.resolve_update(chunk).new.to_polars().iter_rows(named=True)}
    for vid, row in parents.items():
        rows = chunk_rows(row, 3)
        if vid == "3":  # one child carries a different provenance
            rows = rows.with_columns(
                pl.when(pl.col("video_chunk_id") == "3_1")
                .then(pl.lit("deadbeef"))
                .otherwise(pl.col("metaxy_provenance"))
                .alias("metaxy_provenance")
            )
        store.write(chunk, rows)
    inc = store.resolve_update(chunk)
    assert inc.counts() == {"new": 0, "stale": 1, "orphaned": 0}
    assert inc.stale.to_polars()["video_id"].to_list() == ["3"]

    # video 1 disappears from the samples: its chunks are orphaned, once, at parent granularity
    inc_root = store.resolve_update(video, samples=VIDEOS.filter(pl.col("video_id") != 1))
    assert inc_root.counts() == {"new": 0, "stale": 0, "orphaned": 1}
    store.delete(video, "video_id = '1'")
    first = store.resolve_update(chunk)
    assert first.counts() == {"new": 0, "stale": 1, "orphaned": 1}
    orphaned = first.orphaned.to_polars()
    assert orphaned.columns == ["video_id", PBF, "metaxy_provenance"]
    assert orphaned["video_id"].to_list() == ["1"]
    # deterministic across repeated calls
    for _ in range(3):
        again = store.resolve_update(chunk)
        assert again.orphaned.to_polars().equals(orphaned)
        assert again.stale.to_polars().sort("video_id").equals(first.stale.to_polars().sort("video_id"))


# --------------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------------
def define_speakers(id_type: type = str):
    class Recording(
        mx.BaseFeature,
        spec=mx.FeatureSpec(key="audio/recording", id_columns=["recording_id"], fields=["audio"]),
    ):
        recording_id: id_type  # type: ignore[valid-type]
        speaker_id: str

    class SpeakerEmbedding(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="audio/speaker",
            id_columns=["speaker_id"],
            deps=[
                mx.FeatureDep(
                    feature=Recording, lineage=mx.LineageRelationship.aggregation(on=["speaker_id"])
                )
            ],
            fields=["embedding"],
        ),
    ):
        speaker_id: str

    return Recording, SpeakerEmbedding


def recordings(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "recording_id": [r[0] for r in rows],
            "speaker_id": [r[1] for r in rows],
            PBF: [{"audio": r[2]} for r in rows],
        }
    )


def step_speakers(store, rec, spk, rows) -> tuple[dict[str, int], list[str]]:
    inc = store.resolve_update(rec, samples=recordings(rows))
    for part in (inc.new, inc.stale):
        if len(part):
            store.write(rec, part)
    gone = inc.orphaned.to_polars()["recording_id"].to_list()
    if gone:
        store.delete(rec, nw.col("recording_id").is_in(gone))
    inc = store.resolve_update(spk)
    todo = inc.to_process()
    if len(todo):
        store.write(spk, todo.select("speaker_id", PBF, "metaxy_provenance"))
    return inc.counts(), sorted(todo["speaker_id"].to_list())


def test_aggregation_story(store):
    rec, spk = define_speakers()
    base = [("r1", "s1", "a"), ("r2", "s1", "b"), ("r3", "s2", "c"), ("r4", "s2", "d")]
    assert step_speakers(store, rec, spk, base) == ({"new": 2, "stale": 0, "orphaned": 0}, ["s1", "s2"])
    assert step_speakers(store, rec, spk, base) == ({"new": 0, "stale": 0, "orphaned": 0}, [])
    changed = [("r1", "s1", "a"), ("r2", "s1", "B"), ("r3", "s2", "c"), ("r4", "s2", "d")]
    assert step_speakers(store, rec, spk, changed) == ({"new": 0, "stale": 1, "orphaned": 0}, ["s1"])
    added = [*changed, ("r5", "s2", "e")]
    assert step_speakers(store, rec, spk, added) == ({"new": 0, "stale": 1, "orphaned": 0}, ["s2"])
    removed = [r for r in added if r[0] != "r2"]
    assert step_speakers(store, rec, spk, removed) == ({"new": 0, "stale": 1, "orphaned": 0}, ["s1"])
    assert step_speakers(store, rec, spk, removed) == ({"new": 0, "stale": 0, "orphaned": 0}, [])
    # one row per group, never one per member
    assert store.read(spk).to_polars().height == 2


def test_aggregation_provenance_matches_formula_with_integer_ids(store8):
    store = store8
    rec, spk = define_speakers(int)
    # 10 sorts before 9 as text: members are ordered by their id's text form, in byte order
    rows = [(9, "s1", "x"), (10, "s1", "y")]
    step_speakers(store, rec, spk, rows)
    stored = {r["recording_id"]: r for r in store.read(rec).to_polars().iter_rows(named=True)}
    dv9, dv10 = (
        stored[9]["metaxy_data_version_by_field"]["audio"],
        stored[10]["metaxy_data_version_by_field"]["audio"],
    )
    assert dv9 == h("audio/recording.audio|__metaxy_initial__|x")
    group = h(f"10|{dv10}|9|{dv9}")
    field = h(f"audio/speaker.embedding|__metaxy_initial__|audio/recording.audio|{group}")
    row = store.read(spk).to_polars().row(0, named=True)
    assert row[PBF] == {"embedding": field}
    assert row["metaxy_provenance"] == h(f"embedding|{field}")


# --------------------------------------------------------------------------------------------------
# optional deps, columns, rename, filters
# --------------------------------------------------------------------------------------------------
def two_roots():
    class A(mx.Feature, spec=mx.FeatureSpec(key="a", fields=["x"])):
        path: str
        lang: str

    class B(mx.Feature, spec=mx.FeatureSpec(key="b", fields=["y"])):
        path: str

    return A, B


def put(store, feature, ids, values, **columns):
    field = str(feature.spec.fields[0].key)
    samples = pl.DataFrame({"sample_uid": ids, **columns, PBF: [{field: v} for v in values]})
    return sync_root(store, feature, samples)


def write_all(store, feature) -> None:
    store.write(feature, store.resolve_update(feature).to_process().select("sample_uid", PBF))


def test_optional_dep_left_join_and_stale_when_input_appears(store8):
    store = store8
    a, b = two_roots()

    class C(
        mx.Feature,
        spec=mx.FeatureSpec(
            key="c",
            deps=[
                mx.FeatureDep(feature=a, columns=["lang"]),
                mx.FeatureDep(feature=b, optional=True, rename={"path": "b_path"}),
            ],
            fields=["z"],
        ),
    ):
        pass

    put(store, a, ["1", "2", "3"], ["a", "b", "c"], path=["p1", "p2", "p3"], lang=["en", "de", "en"])
    put(store, b, ["1"], ["q"], path=["bp1"])
    inc = store.resolve_update(C)
    new = inc.new.to_polars().sort("sample_uid")
    assert new.columns == ["sample_uid", "lang", "b_path", PBF, "metaxy_provenance", "metaxy_changed_fields"]
    assert new["metaxy_changed_fields"].to_list() == [["z"]] * 3
    assert new["b_path"].to_list() == ["bp1", None, None]
    # the missing optional input enters the canonical string as ''
    a_dv = store.read(a).to_polars().sort("sample_uid")["metaxy_data_version_by_field"].to_list()
    assert new[PBF][1] == {"z": h(f"c.z|__metaxy_initial__|a.x|{a_dv[1]['x']}|b.y|")}
    write_all(store, C)
    assert store.resolve_update(C).counts() == {"new": 0, "stale": 0, "orphaned": 0}

    put(store, b, ["1", "2"], ["q", "r"], path=["bp1", "bp2"])
    inc = store.resolve_update(C)
    assert inc.counts() == {"new": 0, "stale": 1, "orphaned": 0}
    assert inc.stale.to_polars()["sample_uid"].to_list() == ["2"]
    assert inc.stale.to_polars()["metaxy_changed_fields"].to_list() == [["z"]]


def test_all_optional_deps_use_a_full_outer_join(store):
    a, b = two_roots()

    class D(
        mx.Feature,
        spec=mx.FeatureSpec(
            key="d",
            deps=[
                mx.FeatureDep(feature=a, optional=True, columns=()),
                mx.FeatureDep(feature=b, optional=True, columns=()),
            ],
            fields=["w"],
        ),
    ):
        pass

    put(store, a, ["1", "2"], ["a", "b"], path=["p1", "p2"], lang=["en", "de"])
    put(store, b, ["2", "3"], ["q", "r"], path=["bp2", "bp3"])
    inc = store.resolve_update(D)
    assert sorted(inc.new.to_polars()["sample_uid"]) == ["1", "2", "3"]
    assert inc.new.to_polars().columns == ["sample_uid", PBF, "metaxy_provenance", "metaxy_changed_fields"]


def test_column_collision_and_bad_rename_are_rejected_with_a_fix():
    a, b = two_roots()
    with pytest.raises(
        mx.FeatureDefinitionError, match=r"column 'path' would come from both 'a' and 'b'.*rename="
    ):

        class Bad(mx.Feature, spec=mx.FeatureSpec(key="bad", deps=[a, b])):
            pass

    with pytest.raises(mx.FeatureDefinitionError, match=r"renames onto the reserved 'metaxy_' prefix"):

        class Bad2(
            mx.Feature,
            spec=mx.FeatureSpec(key="bad2", deps=[mx.FeatureDep(feature=a, rename={"path": "metaxy_path"})]),
        ):
            pass

    with pytest.raises(mx.FeatureDefinitionError, match=r"selects \['nope'\], which 'a' does not declare"):

        class Bad3(
            mx.Feature, spec=mx.FeatureSpec(key="bad3", deps=[mx.FeatureDep(feature=a, columns=["nope"])])
        ):
            pass

    class Ok(
        mx.Feature,
        spec=mx.FeatureSpec(key="ok", deps=[a, mx.FeatureDep(feature=b, rename={"path": "b_path"})]),
    ):
        pass


def test_collision_between_undeclared_upstream_columns_is_caught_at_resolve(store):
    class U(mx.Feature, spec=mx.FeatureSpec(key="u")):
        pass

    class V(mx.Feature, spec=mx.FeatureSpec(key="v")):
        pass

    class W(mx.Feature, spec=mx.FeatureSpec(key="w", deps=[U, V])):
        pass

    put(store, U, ["1"], ["a"], path=["p"])
    put(store, V, ["1"], ["b"], path=["q"])
    with pytest.raises(mx.ResolveError, match=r"column 'path' comes from both 'u' and 'v'"):
        store.resolve_update(W)


@pytest.mark.parametrize("flt", ["lang = 'en'", nw.col("lang") == "en"], ids=["sql", "narwhals"])
def test_upstream_filters(store, flt):
    a, _ = two_roots()

    class E(
        mx.Feature, spec=mx.FeatureSpec(key="e", deps=[mx.FeatureDep(feature=a, filters=[flt])], fields=["v"])
    ):
        pass

    put(store, a, ["1", "2", "3"], ["a", "b", "c"], path=["p1", "p2", "p3"], lang=["en", "de", "en"])
    inc = store.resolve_update(E)
    assert sorted(inc.new.to_polars()["sample_uid"]) == ["1", "3"]
    write_all(store, E)
    assert store.resolve_update(E).counts() == {"new": 0, "stale": 0, "orphaned": 0}


@pytest.mark.parametrize("flt", ["sample_uid <> '2'", nw.col("sample_uid") != "2"], ids=["sql", "narwhals"])
def test_target_filters_apply_to_both_sides(store, flt):
    a, _ = two_roots()

    class F(
        mx.Feature, spec=mx.FeatureSpec(key="f", deps=[mx.FeatureDep(feature=a, columns=())], fields=["v"])
    ):
        pass

    put(store, a, ["1", "2", "3"], ["a", "b", "c"], path=["p1", "p2", "p3"], lang=["en", "de", "en"])
    inc = store.resolve_update(F, filters=flt)
    assert sorted(inc.new.to_polars()["sample_uid"]) == ["1", "3"]  # the filtered sample is never new
    store.write(F, inc.new.to_polars().select("sample_uid", PBF))
    # the stored side is filtered too: 2 is not orphaned under the filter, and new without it
    assert store.resolve_update(F, filters=flt).counts() == {"new": 0, "stale": 0, "orphaned": 0}
    assert store.resolve_update(F).counts() == {"new": 1, "stale": 0, "orphaned": 0}


def test_engines_agree_on_lineage_provenance(store_factory, hash8):
    """The same random pipeline gives byte-identical provenance on this store and another engine."""
    rec, spk = define_speakers()
    rng = random.Random(7)
    rows = [(f"r{i}", f"s{rng.randint(0, 4)}", str(rng.random())) for i in range(40)]
    tested = store_factory(hash_length=8)
    # compare with a different engine: the in-memory store against DuckDB, every other one against memory
    reference: mx.MetadataStore = (
        mx.DuckDBMetadataStore(":memory:", hash_length=8)
        if isinstance(tested, mx.InMemoryMetadataStore)
        else mx.InMemoryMetadataStore(hash_length=8)
    )
    results = []
    for s in (tested, reference):
        with s:
            step_speakers(s, rec, spk, rows)
            results.append(
                s.read(spk).to_polars().select("speaker_id", PBF, "metaxy_provenance").sort("speaker_id")
            )
    assert results[0].equals(results[1])


def test_write_drops_carried_upstream_columns_but_rejects_unknown_ones(store):
    a, _ = two_roots()

    class G(mx.Feature, spec=mx.FeatureSpec(key="g", deps=[a], fields=["v"])):
        score: float

    put(store, a, ["1", "2"], ["a", "b"], path=["p1", "p2"], lang=["en", "de"])
    inc = store.resolve_update(G)
    assert {"path", "lang"} <= set(inc.new.to_polars().columns)
    # the increment's upstream columns (path, lang) are not G's data: dropped on write
    assert store.write(G, inc.new.to_polars().with_columns(score=pl.lit(0.5))) == 2
    assert "path" not in store.read(G).to_polars().columns
    with pytest.raises(mx.MetadataValidationError, match=r"column\(s\) \['scroe'\] are not declared on G"):
        store.write(G, inc.new.to_polars().with_columns(score=pl.lit(0.5), scroe=pl.lit(1)))
