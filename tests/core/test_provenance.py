"""Sample-level provenance, checked against the formulas computed by hand with hashlib."""

import hashlib
from collections.abc import Callable

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import metaxy_core as mx
from metaxy_core import columns as C
from tests.conftest import STORE_FACTORIES
from tests.core.pipelines import build_video_pipeline, process, raw_samples, run_pipeline, sorted_polars

INITIAL = "__metaxy_initial__"


def hs(*parts: str, algorithm: str = "sha256", length: int = 16) -> str:
    """The canonical string joined with '|' and hashed, written out independently of metaxy_core."""
    data = "|".join(parts).encode("utf-8")
    return hashlib.new(algorithm, data).hexdigest()[:length]


def sample_hash(prov: dict[str, str], **kw: str | int) -> str:
    parts: list[str] = []
    for key in sorted(prov):
        parts += [key, prov[key]]
    return hs(*parts, **kw)  # type: ignore[arg-type]


def expected_for_b(algorithm: str = "sha256", length: int = 16) -> dict[str, dict[str, str]]:
    """Provenance of sample "b" in every feature of the video pipeline, from the provenance formulas."""
    kw = {"algorithm": algorithm, "length": length}
    raw = {
        "audio": hs("video/raw.audio", "1", "audio-b", **kw),  # type: ignore[arg-type]
        "frames": hs("video/raw.frames", INITIAL, "frames-b", **kw),  # type: ignore[arg-type]
    }
    crop = {
        "audio": hs("video/crop.audio", INITIAL, "video/raw.audio", raw["audio"], **kw),  # type: ignore[arg-type]
        "frames": hs("video/crop.frames", INITIAL, "video/raw.frames", raw["frames"], **kw),  # type: ignore[arg-type]
    }
    faces = {"faces": hs("video/faces.faces", INITIAL, "video/crop.frames", crop["frames"], **kw)}  # type: ignore[arg-type]
    stt = {"transcription": hs("video/stt.transcription", INITIAL, "video/raw.audio", raw["audio"], **kw)}  # type: ignore[arg-type]
    return {"video/raw": raw, "video/crop": crop, "video/faces": faces, "video/stt": stt}


def stored_row(store: mx.MetadataStore, feature: type[mx.BaseFeature], vid: str = "b") -> dict:
    return store.read(feature).to_polars().filter(pl.col("video_id") == vid).row(0, named=True)


def test_provenance_matches_hand_computed_values(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    expected = expected_for_b()
    for feature in p.features:
        key = str(feature.spec.key)
        kwargs = {"samples": raw_samples()} if feature is p.raw else {}
        inc = store.resolve_update(feature, **kwargs)
        row = inc.new.to_polars().filter(pl.col("video_id") == "b").row(0, named=True)
        assert row[C.PROVENANCE_BY_FIELD] == expected[key], key
        assert row[C.PROVENANCE] == sample_hash(expected[key]), key
        process(store, feature, inc)
        stored = stored_row(store, feature)
        assert stored[C.PROVENANCE_BY_FIELD] == expected[key]
        assert stored[C.PROVENANCE] == sample_hash(expected[key])
        assert stored[C.DATA_VERSION] == sample_hash(expected[key])


def test_parents_are_sorted_by_fully_qualified_name(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    with p.graph.use():
        # deps and field deps listed out of order on purpose; mx.ALL on the second field
        class Summary(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="video/summary",
                id_columns=["video_id"],
                deps=[p.stt, mx.FeatureDep(feature=p.crop, columns=[])],
                fields=[
                    mx.FieldSpec(
                        "digest",
                        code_version=3,
                        deps=[
                            mx.FieldDep(feature=p.stt, fields=["transcription"]),
                            mx.FieldDep(feature=p.crop, fields=["frames", "audio"]),
                        ],
                    ),
                    mx.FieldSpec("all", deps=mx.ALL),
                ],
            ),
        ):
            video_id: str

    b = expected_for_b()
    parents = [
        "video/crop.audio",
        b["video/crop"]["audio"],
        "video/crop.frames",
        b["video/crop"]["frames"],
        "video/stt.transcription",
        b["video/stt"]["transcription"],
    ]
    expected = {
        "all": hs("video/summary.all", INITIAL, *parents),
        "digest": hs("video/summary.digest", "3", *parents),
    }
    inc = store.resolve_update(Summary)
    # crop carries no columns (columns=[]), stt carries its `text`
    assert inc.new.columns == ["video_id", "text", C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.CHANGED_FIELDS]
    row = inc.new.to_polars().filter(pl.col("video_id") == "b").row(0, named=True)
    assert row[C.PROVENANCE_BY_FIELD] == expected
    assert row[C.PROVENANCE] == hs("all", expected["all"], "digest", expected["digest"])


def test_downstream_hashes_data_version_not_provenance(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    inc = store.resolve_update(p.raw, samples=raw_samples(["b"]))
    store.write(
        p.raw,
        inc.new.to_polars().with_columns(
            pl.lit({"audio": "A", "frames": "F"}).alias(C.DATA_VERSION_BY_FIELD)
        ),
    )
    stored = stored_row(store, p.raw)
    assert stored[C.DATA_VERSION] == hs("audio", "A", "frames", "F")
    row = store.resolve_update(p.crop).new.to_polars().row(0, named=True)
    assert row[C.PROVENANCE_BY_FIELD] == {
        "audio": hs("video/crop.audio", INITIAL, "video/raw.audio", "A"),
        "frames": hs("video/crop.frames", INITIAL, "video/raw.frames", "F"),
    }


@pytest.mark.parametrize("hash_length", [8, 64])
def test_hash_length_given_to_the_store(
    store_factory: Callable[..., mx.MetadataStore], hash_length: int
) -> None:
    # A store does not read settings: the config (or the caller) hands it the hash length.
    p = build_video_pipeline()
    with store_factory(hash_length=hash_length) as store:
        run_pipeline(store, p, raw_samples())
        expected = expected_for_b(length=hash_length)
        for feature in p.features:
            row = stored_row(store, feature)
            assert row[C.PROVENANCE_BY_FIELD] == expected[str(feature.spec.key)]
            assert row[C.PROVENANCE] == sample_hash(expected[str(feature.spec.key)], length=hash_length)


def test_md5_option(store_factory: Callable[..., mx.MetadataStore]) -> None:
    p = build_video_pipeline()
    with store_factory(hash_algorithm="md5") as store:
        run_pipeline(store, p, raw_samples())
        expected = expected_for_b(algorithm="md5")
        for feature in p.features:
            row = stored_row(store, feature)
            assert row[C.PROVENANCE_BY_FIELD] == expected[str(feature.spec.key)]
            assert row[C.PROVENANCE] == sample_hash(expected[str(feature.spec.key)], algorithm="md5")


def test_unknown_hash_algorithm_is_rejected(store_factory: Callable[..., mx.MetadataStore]) -> None:
    p = build_video_pipeline()
    # The check may run at construction or at first use, but never silently falls back to sha256.
    with pytest.raises(mx.StoreError, match="Unknown hash algorithm 'crc32'"):  # noqa: PT012
        store = store_factory(hash_algorithm="crc32")
        store.resolve_update(p.raw, samples=raw_samples())
    with pytest.raises(mx.StoreError, match=r"hash_length=40 does not fit md5 \(8..32"):
        mx.InMemoryMetadataStore(hash_algorithm="md5", hash_length=40)


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_every_store_gives_identical_provenance(tmp_path, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    """The same data through every store: byte-identical provenance and data-version columns."""
    v1 = build_video_pipeline()
    v2 = build_video_pipeline(raw_audio="2")
    columns = ["video_id", C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.DATA_VERSION_BY_FIELD, C.DATA_VERSION]
    results: dict[str, list[pl.DataFrame]] = {}
    for name, factory in STORE_FACTORIES.items():
        folder = tmp_path / name
        folder.mkdir()
        frames: list[pl.DataFrame] = []
        with factory(folder, hash_algorithm=algorithm) as store:
            run_pipeline(store, v1, raw_samples())
            frames += [sorted_polars(store.read(f), "video_id").select(columns) for f in v1.features]
            raw = store.resolve_update(v2.raw, samples=raw_samples(["a", "b", "d"], a={"frames": "x"}))
            frames += [sorted_polars(getattr(raw, part), "video_id") for part in ("new", "stale", "orphaned")]
            process(store, v2.raw, raw)
            crop = store.resolve_update(v2.crop)
            frames += [
                sorted_polars(getattr(crop, part), "video_id") for part in ("new", "stale", "orphaned")
            ]
        results[name] = frames
    reference = results.pop("memory")
    assert [f.height for f in reference] == [3, 3, 3, 3, 1, 2, 1, 1, 2, 0]
    for frames in results.values():
        for ours, theirs in zip(frames, reference, strict=True):
            assert_frame_equal(ours, theirs)


def test_missing_upstream_data_version_hashes_as_empty_string(store: mx.MetadataStore) -> None:
    """Rows written before the upstream gained a field have no data version for it: NULL enters the
    canonical string as '' (never as a NULL that nulls the whole hash), in every engine."""

    def define(fields: list[str]) -> tuple[type[mx.BaseFeature], type[mx.BaseFeature]]:
        with mx.FeatureGraph().use():

            class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="raw", id_columns=["vid"], fields=fields)):
                vid: str

            class Crop(
                mx.BaseFeature,
                spec=mx.FeatureSpec(key="crop", id_columns=["vid"], deps=[Raw], fields=["audio", "frames"]),
            ):
                vid: str

        return Raw, Crop

    raw1, _ = define(["audio"])
    samples = pl.DataFrame({"vid": ["a", "b"], C.PROVENANCE_BY_FIELD: [{"audio": "x"}, {"audio": "y"}]})
    store.write(raw1, store.resolve_update(raw1, samples=samples).new)
    dv_a = stored_row_by(store, raw1, "vid", "a")[C.DATA_VERSION_BY_FIELD]["audio"]
    expected = {
        "audio": hs("crop.audio", INITIAL, "raw.audio", dv_a),
        "frames": hs("crop.frames", INITIAL, "raw.frames", ""),
    }
    raw2, crop2 = define(["audio", "frames"])
    # the stored struct has no `frames` at all yet
    row = store.resolve_update(crop2).new.to_polars().filter(pl.col("vid") == "a").row(0, named=True)
    assert row[C.PROVENANCE_BY_FIELD] == expected
    # after one v2 row is written the struct has `frames`, NULL for the old rows
    samples2 = pl.DataFrame({"vid": ["b"], C.PROVENANCE_BY_FIELD: [{"audio": "y", "frames": "g"}]})
    store.write(raw2, store.resolve_update(raw2, samples=samples2).stale)
    assert stored_row_by(store, raw2, "vid", "a")[C.DATA_VERSION_BY_FIELD] == {"audio": dv_a, "frames": None}
    row = store.resolve_update(crop2).new.to_polars().filter(pl.col("vid") == "a").row(0, named=True)
    assert row[C.PROVENANCE_BY_FIELD] == expected


def stored_row_by(store: mx.MetadataStore, feature: type[mx.BaseFeature], column: str, value: str) -> dict:
    return store.read(feature).to_polars().filter(pl.col(column) == value).row(0, named=True)
