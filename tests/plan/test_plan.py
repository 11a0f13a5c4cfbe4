"""``mx.plan``: every feature's predicted increment equals what resolve_update reports at its turn."""

from collections import Counter

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core import planning
from tests.plan.graph import CHILDREN, build, run_all, run_step, samples

N = 30


def changed_counts(inc: mx.Increment) -> dict[str, int]:
    stale = inc.stale.to_polars()
    return dict(
        sorted(Counter(f for fields in stale.get_column(C.CHANGED_FIELDS).to_list() for f in fields).items())
    )


def run_and_compare(
    store: mx.MetadataStore, g, given: pl.DataFrame, prediction: mx.Plan, exact: set[str]
) -> dict:
    """Run the pipeline step by step, checking each feature's increment against its prediction."""
    seen = {}
    with g.graph.use():
        for key in g.graph.topological_order():
            inc = run_step(store, g, g.graph.get_feature(key), given)
            seen[str(key)] = inc.counts()
            expected = prediction[key]
            if str(key) in exact:
                assert inc.counts() == vars(expected.predicted), str(key)
                assert changed_counts(inc) == expected.changed_fields, str(key)
    return seen


def test_prediction_matches_each_turn_after_root_change_and_code_bump(store):
    before = build()
    run_all(store, before, samples(N))
    after = build(chunk_audio="2")
    # audio of videos 0-5 and frames of videos 4-9 change; video 29 is no longer listed
    given = samples(N, audio={i: "a1" for i in range(6)}, frames={i: "f1" for i in range(4, 10)}).filter(
        pl.col("video_id") != "v029"
    )
    with after.graph.use():
        prediction = mx.plan(store, samples={after.video: given})
    got = {f.key: (vars(f.predicted), f.changed_fields) for f in prediction}
    assert got == {
        "plan/video": ({"new": 0, "stale": 10, "orphaned": 1}, {"audio": 6, "frames": 6}),
        # the code bump makes every stored video's chunks stale (video 29 is still stored: orphans stay)
        "plan/chunk": ({"new": 0, "stale": N, "orphaned": 0}, {"audio": N, "frames": 6}),
        # faces read frames only: the chunks of videos 4-9
        "plan/faces": ({"new": 0, "stale": 6 * CHILDREN, "orphaned": 0}, {"faces": 6 * CHILDREN}),
        "plan/video_faces": ({"new": 0, "stale": 6, "orphaned": 0}, {"faces": 6}),
        "plan/stt": ({"new": 0, "stale": 6, "orphaned": 0}, {"text": 6}),
        "plan/speaker": ({"new": 0, "stale": 5, "orphaned": 0}, {"voice": 5}),
    }
    # before anything runs, only the root and the bumped feature know
    assert {f.key: f.now.stale for f in prediction} == {
        "plan/video": 10,
        "plan/chunk": N,
        "plan/faces": 0,
        "plan/video_faces": 0,
        "plan/stt": 0,
        "plan/speaker": 0,
    }
    assert all(not f.notes for f in prediction)
    run_and_compare(store, after, given, prediction, exact={f.key for f in prediction})
    # and once run, nothing is left to do
    with after.graph.use():
        again = mx.plan(store, samples={after.video: given})
    assert again.to_run == []


@pytest.mark.parametrize("lookup", ["scan", "many-queries"])
def test_both_lookup_paths_give_the_same_prediction(store, lookup, monkeypatch):
    # few changed samples are fetched with IN filters in chunks, many by one read of the columns
    if lookup == "scan":
        monkeypatch.setattr(planning, "MAX_LOOKUP_QUERIES", 0)
    else:
        monkeypatch.setattr(planning, "MAX_LOOKUP_CHARS", 40)
        monkeypatch.setattr(planning, "MAX_LOOKUP_QUERIES", 10_000)
    before = build()
    run_all(store, before, samples(12))
    after = build(chunk_audio="2")
    given = samples(12, audio={1: "x", 2: "x"}, frames={2: "y", 3: "y"})
    with after.graph.use():
        prediction = mx.plan(store, samples={after.video: given})
    assert {f.key: f.predicted.stale for f in prediction} == {
        "plan/video": 3,
        "plan/chunk": 12,
        "plan/faces": 2 * CHILDREN,
        "plan/video_faces": 2,
        "plan/stt": 2,
        "plan/speaker": 2,
    }
    run_and_compare(store, after, given, prediction, exact={f.key for f in prediction})


def test_new_samples_exact_until_an_expansion_then_flagged(store):
    g = build()
    run_all(store, g, samples(10))
    given = samples(12)
    with g.graph.use():
        prediction = mx.plan(store, samples={g.video: given})
    assert vars(prediction["plan/video"].predicted) == {"new": 2, "stale": 0, "orphaned": 0}
    assert vars(prediction["plan/chunk"].predicted) == {"new": 2, "stale": 0, "orphaned": 0}
    # stt is 1:1 with videos; the speakers of the new videos (s0, s1) gain members
    assert vars(prediction["plan/stt"].predicted) == {"new": 2, "stale": 0, "orphaned": 0}
    assert vars(prediction["plan/speaker"].predicted) == {"new": 0, "stale": 2, "orphaned": 0}
    # the new videos' chunks do not exist yet: below the expansion the plan says it cannot count them
    for key in ("plan/faces", "plan/video_faces"):
        assert prediction[key].uncounted_from == ("plan/chunk",)
        assert prediction[key].notes
        assert "plan/chunk" in prediction[key].notes[0]
    run_and_compare(
        store, g, given, prediction, exact={"plan/video", "plan/chunk", "plan/stt", "plan/speaker"}
    )


def test_unread_field_change_is_predicted_zero(store):
    g = build()
    run_all(store, g, samples(10))
    given = samples(10, frames={3: "f1"})
    with g.graph.use():
        prediction = mx.plan(store, samples={g.video: given})
    assert prediction["plan/stt"].predicted.to_process == 0
    assert prediction["plan/speaker"].predicted.to_process == 0
    assert prediction["plan/faces"].predicted.stale == CHILDREN
    assert prediction.to_run == ["plan/video", "plan/chunk", "plan/faces", "plan/video_faces"]


def test_root_without_samples_knows_code_bumps_only():
    store = mx.InMemoryMetadataStore()
    g = build()
    run_all(store, g, samples(4))
    with g.graph.use():
        prediction = mx.plan(store)
    video = prediction["plan/video"]
    assert (video.now.new, video.now.stale, video.now.orphaned) == (None, 0, None)
    assert "samples" in video.notes[0]
    assert prediction.to_run == []


def test_estimates_from_recorded_runs():
    store = mx.InMemoryMetadataStore()
    g = build()
    run_all(store, g, samples(10))
    store.record_run(g.stt, seconds=2.0, samples=4)
    store.record_run(g.stt, seconds=3.0, samples=6)
    store.record_run("plan/faces", seconds=1.0, samples=0)  # no samples: no rate
    with g.graph.use():
        prediction = mx.plan(store, samples={g.video: samples(10, audio={1: "x", 2: "x"})})
    stt = prediction["plan/stt"]
    assert stt.seconds_per_sample == pytest.approx(0.5)
    assert stt.estimated_seconds == pytest.approx(1.0)
    assert prediction["plan/faces"].estimated_seconds is None
    assert prediction.total_estimated_seconds == pytest.approx(1.0)
    data = prediction.to_dict()
    assert data["total_estimated_seconds"] == pytest.approx(1.0)
    assert {"key", "now", "predicted", "changed_fields", "estimated_seconds"} <= set(data["features"][0])
    assert "| plan/stt |" in prediction.to_markdown()
    assert "flowchart TD" in prediction.to_mermaid(g.graph)


@pytest.mark.parametrize(
    ("seconds", "samples", "match"),
    [(-1.0, 3, "seconds must be >= 0"), (float("nan"), 3, "finite"), (1.0, -2, "non-negative integer")],
)
def test_record_run_rejects_bad_values(seconds, samples, match):
    store = mx.InMemoryMetadataStore()
    with pytest.raises(mx.MetadataValidationError, match=match):
        store.record_run("plan/video", seconds=seconds, samples=samples)
    assert store.read_system("runs") is None


def test_new_sample_needs_every_required_dep(store):
    class Left(mx.BaseFeature, spec=mx.FeatureSpec(key="plan/left", id_columns=["id"])):
        id: str

    class Right(mx.BaseFeature, spec=mx.FeatureSpec(key="plan/right", id_columns=["id"])):
        id: str

    class Both(mx.BaseFeature, spec=mx.FeatureSpec(key="plan/both", id_columns=["id"], deps=[Left, Right])):
        id: str

    def ids(*values: str) -> pl.DataFrame:
        return pl.DataFrame({"id": list(values), C.PROVENANCE_BY_FIELD: [{"default": "x"}] * len(values)})

    roots = {Left: ids("a", "b"), Right: ids("a", "b")}
    for feature in (Left, Right, Both):
        inc = store.resolve_update(feature, samples=roots.get(feature))
        store.write(feature, inc.to_process())
    # c and d are new on the left, only c on the right: the join expects c alone
    roots = {Left: ids("a", "b", "c", "d"), Right: ids("a", "b", "c")}
    prediction = mx.plan(store, samples=roots)
    assert vars(prediction[Both].predicted) == {"new": 1, "stale": 0, "orphaned": 0}
    for feature in (Left, Right):
        store.write(feature, store.resolve_update(feature, samples=roots[feature]).to_process())
    assert store.resolve_update(Both).counts() == vars(prediction[Both].predicted)


def test_empty_store_predicts_new_samples_down_to_the_expansion(store):
    g = build()
    given = samples(7)
    with g.graph.use():
        prediction = mx.plan(store, samples={g.video: given})
    assert {f.key: f.predicted.new for f in prediction} == {
        "plan/video": 7,
        "plan/chunk": 7,
        "plan/faces": 0,
        "plan/video_faces": 0,
        "plan/stt": 7,
        "plan/speaker": 5,
    }
    assert prediction.may_run == [f.key for f in prediction]
    run_and_compare(
        store, g, given, prediction, exact={"plan/video", "plan/chunk", "plan/stt", "plan/speaker"}
    )


def test_new_sample_of_an_optional_dep_alone_is_not_expected():
    class Main(mx.BaseFeature, spec=mx.FeatureSpec(key="plan/main", id_columns=["id"])):
        id: str

    class Extra(mx.BaseFeature, spec=mx.FeatureSpec(key="plan/extra", id_columns=["id"])):
        id: str

    class Joined(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="plan/joined", id_columns=["id"], deps=[Main, mx.FeatureDep(feature=Extra, optional=True)]
        ),
    ):
        id: str

    def ids(*values: str) -> pl.DataFrame:
        return pl.DataFrame({"id": list(values), C.PROVENANCE_BY_FIELD: [{"default": "x"}] * len(values)})

    store = mx.InMemoryMetadataStore()
    roots = {Main: ids("a"), Extra: ids("a")}
    for feature in (Main, Extra, Joined):
        store.write(feature, store.resolve_update(feature, samples=roots.get(feature)).to_process())
    # z is new in the optional dep only: the left join does not expect it; b is new in main
    roots = {Main: ids("a", "b"), Extra: ids("a", "z")}
    prediction = mx.plan(store, samples=roots)
    assert vars(prediction[Joined].predicted) == {"new": 1, "stale": 0, "orphaned": 0}
    for feature in (Main, Extra):
        store.write(feature, store.resolve_update(feature, samples=roots[feature]).to_process())
    assert store.resolve_update(Joined).counts() == vars(prediction[Joined].predicted)


def test_new_sample_of_a_dep_no_field_reads_still_joins():
    class Media(mx.BaseFeature, spec=mx.FeatureSpec(key="plan/media", id_columns=["id"], fields=["pixels"])):
        id: str

    class Consent(mx.BaseFeature, spec=mx.FeatureSpec(key="plan/consent", id_columns=["id"], fields=["ok"])):
        id: str

    class Thumb(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="plan/thumb",
            id_columns=["id"],
            deps=[Media, Consent],
            # reads the pixels only: consent decides which samples exist, not what they contain
            fields=[mx.FieldSpec("image", deps=[mx.FieldDep(feature=Media, fields=["pixels"])])],
        ),
    ):
        id: str

    def ids(field: str, *values: str) -> pl.DataFrame:
        return pl.DataFrame({"id": list(values), C.PROVENANCE_BY_FIELD: [{field: "x"}] * len(values)})

    store = mx.InMemoryMetadataStore()
    roots = {Media: ids("pixels", "a", "b"), Consent: ids("ok", "a")}
    for feature in (Media, Consent, Thumb):
        store.write(feature, store.resolve_update(feature, samples=roots.get(feature)).to_process())
    roots = {Media: roots[Media], Consent: ids("ok", "a", "b")}  # consent for b arrives
    prediction = mx.plan(store, samples=roots)
    assert vars(prediction[Thumb].predicted) == {"new": 1, "stale": 0, "orphaned": 0}
    store.write(Consent, store.resolve_update(Consent, samples=roots[Consent]).to_process())
    assert store.resolve_update(Thumb).counts() == vars(prediction[Thumb].predicted)
