"""Defining features: keys, specs, field-level dependencies, graphs and invalid graphs."""

import json

import pytest

import metaxy_core as mx

# -- keys -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form", ["video/raw", ["video", "raw"], ("video", "raw"), mx.FeatureKey("video/raw")]
)
def test_feature_key_forms(form: object) -> None:
    key = mx.FeatureKey(form)  # type: ignore[arg-type]
    assert key == mx.FeatureKey("video/raw")
    assert key.parts == ("video", "raw")
    assert str(key) == "video/raw"
    assert key.table_name == "video__raw"
    assert hash(key) == hash(mx.FeatureKey(["video", "raw"]))


def test_key_ordering_and_kinds() -> None:
    assert sorted([mx.FeatureKey("b"), mx.FeatureKey("a/z"), mx.FeatureKey("a")]) == [
        mx.FeatureKey("a"),
        mx.FeatureKey("a/z"),
        mx.FeatureKey("b"),
    ]
    assert mx.FieldKey(["audio"]) == mx.FieldKey("audio")
    assert str(mx.FieldKey(["audio", "left"])) == "audio/left"
    assert mx.FieldKey("audio") != mx.FeatureKey("audio")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", r"parts must be non-empty"),
        ("video//raw", r"Invalid feature key part '' in 'video//raw'"),
        ("video/", r"Invalid feature key part ''"),
        ([], r"needs at least one part"),
        ("video raw", r"Invalid feature key part 'video raw'.*letters, digits, '_' and '-'"),
        ("video.raw", r"Invalid feature key part 'video.raw'"),
        (["video", "r/aw"], r"Invalid feature key part 'r/aw'"),
        ("vidéo", r"Invalid feature key part 'vidéo'"),
        ("video__raw", r"'__' is reserved"),
        (["a", "b__c"], r"Invalid feature key part 'b__c'.*'__' is reserved"),
        (42, r"Cannot build a feature key from 42"),
    ],
)
def test_invalid_feature_keys(bad: object, message: str) -> None:
    with pytest.raises(mx.InvalidKeyError, match=message):
        mx.FeatureKey(bad)  # type: ignore[arg-type]


def test_invalid_field_key_and_key_errors_are_value_errors() -> None:
    with pytest.raises(mx.InvalidKeyError, match=r"Invalid field key part 'a__b'"):
        mx.FieldKey("a__b")
    with pytest.raises(ValueError, match="field key"):
        mx.FieldSpec("bad field")
    with pytest.raises(mx.InvalidKeyError, match="feature key part 'bad key'"):
        mx.FeatureSpec(key="bad key")


def test_valid_key_characters() -> None:
    assert mx.FeatureKey("Video-2/raw_v1").parts == ("Video-2", "raw_v1")


# -- specs ------------------------------------------------------------------------------------------


def test_field_spec_forms() -> None:
    assert mx.FieldSpec("audio") == mx.FieldSpec(key="audio")
    assert mx.FieldSpec("audio").code_version == "__metaxy_initial__"
    assert mx.FieldSpec("audio", code_version=2).code_version == "2"
    assert mx.FieldSpec(key=mx.FieldKey(["audio"]), code_version="2") == mx.FieldSpec("audio", code_version=2)
    with pytest.raises(mx.FeatureDefinitionError, match="code_version must be an int or a string"):
        mx.FieldSpec("audio", code_version=1.5)


def test_spec_fields_default_and_bare_strings() -> None:
    spec = mx.FeatureSpec(key="a")
    assert spec.fields == (mx.FieldSpec("default"),)
    assert spec.id_columns == ("sample_uid",)
    spec = mx.FeatureSpec(key="a", id_columns=["x"], fields=[mx.FieldSpec("audio", code_version=1), "frames"])
    assert [str(f.key) for f in spec.fields] == ["audio", "frames"]
    assert spec.fields[1].code_version == "__metaxy_initial__"


def test_feature_classes_and_spec_access(graph: mx.FeatureGraph) -> None:
    class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video/raw", id_columns=["video_id"])):
        """Raw videos."""

        video_id: str
        path: str

    class Plain(mx.Feature, spec=mx.FeatureSpec(key="plain")):
        pass

    assert Video.spec.key == mx.FeatureKey("video/raw")
    assert Video.spec().key == mx.FeatureKey("video/raw")  # older spelling
    assert Video.graph is graph
    assert graph.features_by_key == {mx.FeatureKey("video/raw"): Video, mx.FeatureKey("plain"): Plain}
    assert Video.user_columns() == ["video_id", "path"]
    assert Plain.spec.id_columns == ("sample_uid",)
    assert Plain.user_columns() == []
    dumped = Video.spec.model_dump(mode="json")
    assert dumped["key"] == "video/raw"
    assert dumped["fields"] == [{"key": "default", "code_version": "__metaxy_initial__", "deps": None}]
    json.dumps(dumped)


def test_deps_accept_classes_keys_and_feature_deps(graph: mx.FeatureGraph) -> None:
    class A(mx.Feature, spec=mx.FeatureSpec(key="a")):
        pass

    class B(mx.Feature, spec=mx.FeatureSpec(key="b")):
        pass

    class C(mx.Feature, spec=mx.FeatureSpec(key="c")):
        pass

    class D(
        mx.Feature,
        spec=mx.FeatureSpec(key="d", deps=[A, "b", mx.FeatureDep(feature=mx.FeatureKey("c"))]),
    ):
        pass

    assert [d.feature for d in D.spec.deps] == [mx.FeatureKey("a"), mx.FeatureKey("b"), mx.FeatureKey("c")]
    assert D.spec.deps[0] == mx.FeatureDep(feature=A)
    assert D.spec.deps[0].lineage == mx.LineageRelationship.identity()


def test_older_spellings(graph: mx.FeatureGraph) -> None:
    class Video(mx.Feature, spec=mx.FeatureSpec(key=["example", "video"], fields=["audio", "frames"])):
        pass

    dep = mx.FeatureDep(key=Video.spec.key)
    assert dep == mx.FeatureDep(feature=Video)
    assert dep.key == dep.feature == mx.FeatureKey("example/video")
    field_dep = mx.FieldDep(feature_key=Video.spec().key, fields=[mx.FieldKey(["audio"])])
    assert field_dep == mx.FieldDep(feature=Video, fields=["audio"])


def overview_graph() -> dict[str, type[mx.BaseFeature]]:
    """The original metaxy spellings: FeatureKey lists, int code versions, key=/feature_key=."""
    with mx.FeatureGraph().use():
        from metaxy_core import FeatureDep, FeatureKey, FeatureSpec, FieldDep, FieldKey, FieldSpec

        class Video(
            mx.Feature,
            spec=FeatureSpec(
                key=FeatureKey(["example", "video"]),
                deps=None,
                fields=[
                    FieldSpec(key=FieldKey(["audio"]), code_version=1),
                    FieldSpec(key=FieldKey(["frames"]), code_version=1),
                ],
            ),
        ):
            frames: int
            duration: float
            size: int

        class Crop(
            mx.Feature,
            spec=FeatureSpec(
                key=FeatureKey(["example", "crop"]),
                deps=[FeatureDep(key=Video.spec.key)],
                fields=[
                    FieldSpec(
                        key=FieldKey(["audio"]),
                        code_version=1,
                        deps=[FieldDep(feature_key=Video.spec.key, fields=[FieldKey(["audio"])])],
                    ),
                    FieldSpec(
                        key=FieldKey(["frames"]),
                        code_version=1,
                        deps=[FieldDep(feature_key=Video.spec.key, fields=[FieldKey(["frames"])])],
                    ),
                ],
            ),
        ):
            pass

        class FaceDetection(
            mx.Feature,
            spec=FeatureSpec(
                key=FeatureKey(["example", "face_detection"]),
                deps=[FeatureDep(key=Crop.spec.key)],
                fields=[
                    FieldSpec(
                        key=FieldKey(["detections"]),
                        code_version=1,
                        deps=[FieldDep(feature_key=Crop.spec.key, fields=[FieldKey(["frames"])])],
                    )
                ],
            ),
        ):
            pass

    return {"video": Video, "crop": Crop, "face_detection": FaceDetection}


def test_overview_example_with_older_spellings_gives_reference_versions() -> None:
    mx.set_config(mx.load_config(hash_length=64))
    f = overview_graph()
    assert f["video"].feature_version()[:8] == "bc9ca835"
    assert f["crop"].feature_version()[:8] == "3ac04df8"
    assert f["face_detection"].feature_version()[:8] == "fbe130cc"
    assert f["face_detection"].field_versions()["detections"][:8] == "ab065369"


# -- field-level dependencies -----------------------------------------------------------------------


def parents(feature: type[mx.BaseFeature], field: str) -> list[str]:
    return [ref.fq for ref in feature.graph.field_parents(feature.spec.key, mx.FieldKey(field))]


@pytest.fixture
def upstreams(graph: mx.FeatureGraph) -> tuple[type[mx.BaseFeature], type[mx.BaseFeature]]:
    class Video(mx.Feature, spec=mx.FeatureSpec(key="up/video", fields=["audio", "frames"])):
        pass

    class Text(mx.Feature, spec=mx.FeatureSpec(key="up/text", fields=["title", "body"])):
        pass

    return Video, Text


def test_default_field_deps_same_name_else_all(upstreams: tuple[type[mx.BaseFeature], ...]) -> None:
    video, text = upstreams

    class Target(
        mx.Feature, spec=mx.FeatureSpec(key="target", deps=[text, video], fields=["audio", "summary"])
    ):
        pass

    # video has `audio`: only that one; text has no `audio`: all of text's fields
    assert parents(Target, "audio") == ["up/text.body", "up/text.title", "up/video.audio"]
    # nobody has `summary`: every field of every dep
    assert parents(Target, "summary") == [
        "up/text.body",
        "up/text.title",
        "up/video.audio",
        "up/video.frames",
    ]


def test_default_field_for_feature_without_fields(upstreams: tuple[type[mx.BaseFeature], ...]) -> None:
    video, _ = upstreams

    class Target(mx.Feature, spec=mx.FeatureSpec(key="target", deps=[video])):
        pass

    assert Target.field_versions().keys() == {"default"}
    assert parents(Target, "default") == ["up/video.audio", "up/video.frames"]


def test_all_and_explicit_field_deps_replace_the_default(upstreams: tuple[type[mx.BaseFeature], ...]) -> None:
    video, text = upstreams

    class Target(
        mx.Feature,
        spec=mx.FeatureSpec(
            key="target",
            deps=[video, text],
            fields=[
                mx.FieldSpec("audio", deps=mx.ALL),
                mx.FieldSpec("frames", deps=[mx.FieldDep(feature=text, fields=["title"])]),
                mx.FieldSpec("title", deps=[mx.FieldDep(feature=video, fields=mx.ALL)]),
                mx.FieldSpec("body", deps=[mx.FieldDep(feature=video)]),
            ],
        ),
    ):
        pass

    assert parents(Target, "audio") == ["up/text.body", "up/text.title", "up/video.audio", "up/video.frames"]
    # explicit: no same-named `frames` from video
    assert parents(Target, "frames") == ["up/text.title"]
    # explicit: no same-named `title` from text
    assert parents(Target, "title") == ["up/video.audio", "up/video.frames"]
    assert parents(Target, "body") == ["up/video.audio", "up/video.frames"]


def test_root_fields_have_no_parents(upstreams: tuple[type[mx.BaseFeature], ...]) -> None:
    video, _ = upstreams
    assert parents(video, "audio") == []


# -- graphs -----------------------------------------------------------------------------------------


def test_graph_isolation(graph: mx.FeatureGraph) -> None:
    class Outer(mx.Feature, spec=mx.FeatureSpec(key="shared/key")):
        pass

    inner_graph = mx.FeatureGraph()
    with inner_graph.use() as active:
        assert active is inner_graph
        assert mx.FeatureGraph.get_active() is inner_graph

        class Inner(mx.Feature, spec=mx.FeatureSpec(key="shared/key", fields=["other"])):
            pass

    assert mx.FeatureGraph.get_active() is graph
    assert graph.features_by_key == {mx.FeatureKey("shared/key"): Outer}
    assert inner_graph.features_by_key == {mx.FeatureKey("shared/key"): Inner}
    assert Inner.graph is inner_graph
    assert Outer.field_versions().keys() == {"default"}
    assert Inner.field_versions().keys() == {"other"}


def test_topological_order_and_downstream(graph: mx.FeatureGraph) -> None:
    class Z(mx.Feature, spec=mx.FeatureSpec(key="z/root")):
        pass

    class A(mx.Feature, spec=mx.FeatureSpec(key="a/root")):
        pass

    class M(mx.Feature, spec=mx.FeatureSpec(key="m/mid", deps=[Z])):
        pass

    class B(mx.Feature, spec=mx.FeatureSpec(key="b/leaf", deps=[M, A])):
        pass

    class C(mx.Feature, spec=mx.FeatureSpec(key="c/leaf", deps=[Z])):
        pass

    order = [str(k) for k in graph.topological_order()]
    for cls in (M, B, C):
        for dep in cls.spec.deps:
            assert order.index(str(dep.feature)) < order.index(str(cls.spec.key))
    assert order == ["a/root", "z/root", "m/mid", "b/leaf", "c/leaf"]
    assert [str(k) for k in graph.downstream_of(mx.FeatureKey("z/root"))] == ["m/mid", "b/leaf", "c/leaf"]
    assert graph.downstream_of(mx.FeatureKey("a/root")) == [mx.FeatureKey("b/leaf")]


# -- invalid graphs: one test per case, each pinning the error type and wording ----------------------


def test_invalid_unknown_dependency(graph: mx.FeatureGraph) -> None:
    """An upstream named by key may come later; one that never comes fails as soon as the graph is used."""

    class Child(mx.Feature, spec=mx.FeatureSpec(key="doc/child", deps=["doc/missing"])):
        pass

    assert "doc/child" not in graph
    message = (
        r"Feature 'doc/child' \(Child\) depends on unknown feature 'doc/missing', which is never defined"
    )
    with pytest.raises(mx.FeatureDefinitionError, match=message):
        graph.topological_order()
    with pytest.raises(mx.FeatureDefinitionError, match=message):
        Child.feature_version()
    with pytest.raises(mx.FeatureDefinitionError, match=message):
        graph.get_feature("doc/child")


def test_forward_reference_by_key(graph: mx.FeatureGraph) -> None:
    class Child(mx.Feature, spec=mx.FeatureSpec(key="doc/child", deps=["doc/parent"], fields=["x"])):
        pass

    class Parent(mx.Feature, spec=mx.FeatureSpec(key="doc/parent", fields=["x"])):
        pass

    assert [str(k) for k in graph.topological_order()] == ["doc/parent", "doc/child"]
    assert graph.field_parents(mx.FeatureKey("doc/child"), mx.FieldKey("x")) == [
        mx.graph.FieldRef.of(mx.FeatureKey("doc/parent"), mx.FieldKey("x"))
    ]


@pytest.mark.parametrize("length", [2, 3, 4])
def test_invalid_cycle_through_forward_references(graph: mx.FeatureGraph, length: int) -> None:
    keys = [f"doc/f{i}" for i in range(length)]
    for i in range(length - 1):
        type(f"F{i}", (mx.Feature,), {}, spec=mx.FeatureSpec(key=keys[i], deps=[keys[i + 1]]))
    cycle = " -> ".join([*keys, keys[0]])
    with pytest.raises(mx.FeatureDefinitionError, match=f"Dependency cycle between features: {cycle}"):
        type("Last", (mx.Feature,), {}, spec=mx.FeatureSpec(key=keys[-1], deps=[keys[0]]))
    assert keys[-1] not in graph


def test_invalid_field_dep_on_missing_upstream_field(graph: mx.FeatureGraph) -> None:
    class Parent(mx.Feature, spec=mx.FeatureSpec(key="doc/parent", fields=["audio", "frames"])):
        pass

    with pytest.raises(
        mx.FeatureDefinitionError,
        match=r"Feature 'doc/child' \(Child\), field 'x': depends on field 'colour' of 'doc/parent', "
        r"which has no such field \(it has: audio, frames\)",
    ):

        class Child(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="doc/child",
                deps=[Parent],
                fields=[mx.FieldSpec("x", deps=[mx.FieldDep(feature=Parent, fields=["colour"])])],
            ),
        ):
            pass

    assert "doc/child" not in graph


def test_invalid_field_dep_on_feature_not_in_deps(graph: mx.FeatureGraph) -> None:
    class Parent(mx.Feature, spec=mx.FeatureSpec(key="doc/parent")):
        pass

    class Other(mx.Feature, spec=mx.FeatureSpec(key="doc/other")):
        pass

    with pytest.raises(
        mx.FeatureDefinitionError,
        match=r"Feature 'doc/child' \(Child\), field 'x': FieldDep on 'doc/other', which is not among the "
        r"feature's deps \(doc/parent\)\. Add FeatureDep\(feature='doc/other'\)",
    ):

        class Child(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="doc/child",
                deps=[Parent],
                fields=[mx.FieldSpec("x", deps=[mx.FieldDep(feature=Other)])],
            ),
        ):
            pass

    assert "doc/child" not in graph


def test_invalid_duplicate_field_key(graph: mx.FeatureGraph) -> None:
    with pytest.raises(
        mx.FeatureDefinitionError,
        match=r"Feature 'doc/dupe' declares field 'audio' twice: field keys must be unique",
    ):

        class Dupe(
            mx.Feature,
            spec=mx.FeatureSpec(key="doc/dupe", fields=["audio", mx.FieldSpec("audio", code_version=2)]),
        ):
            pass

    assert "doc/dupe" not in graph


def test_invalid_duplicate_feature_key(graph: mx.FeatureGraph) -> None:
    class First(mx.Feature, spec=mx.FeatureSpec(key="doc/same")):
        pass

    with pytest.raises(
        mx.FeatureDefinitionError,
        match=r"Feature key 'doc/same' is already used by .*First; .*Second must use another key",
    ):

        class Second(mx.Feature, spec=mx.FeatureSpec(key="doc/same", fields=["x"])):
            pass

    assert graph.features_by_key[mx.FeatureKey("doc/same")] is First


def test_invalid_cycle(graph: mx.FeatureGraph) -> None:
    with pytest.raises(
        mx.FeatureDefinitionError, match=r"Feature 'doc/loop' \(Loop\) depends on itself: this is a cycle"
    ):

        class Loop(mx.Feature, spec=mx.FeatureSpec(key="doc/loop", deps=["doc/loop"])):
            pass

    assert "doc/loop" not in graph


def test_invalid_user_column_with_system_prefix(graph: mx.FeatureGraph) -> None:
    with pytest.raises(
        mx.FeatureDefinitionError,
        match=r"Feature 'doc/cols' \(Cols\) declares column 'metaxy_provenance', but the 'metaxy_' prefix is "
        r"reserved for system columns",
    ):

        class Cols(mx.Feature, spec=mx.FeatureSpec(key="doc/cols")):
            metaxy_provenance: str

    assert "doc/cols" not in graph


def test_invalid_cycle_through_redefinition(graph: mx.FeatureGraph) -> None:
    """Re-running a definition (same module and qualname, e.g. a notebook cell) may not close a loop."""

    def define_a(deps: list[str]) -> type[mx.BaseFeature]:
        class A(mx.Feature, spec=mx.FeatureSpec(key="doc/a", deps=deps)):
            pass

        return A

    first = define_a([])

    class B(mx.Feature, spec=mx.FeatureSpec(key="doc/b", deps=[first])):
        pass

    with pytest.raises(
        mx.FeatureDefinitionError, match=r"Dependency cycle between features: doc/a -> doc/b -> doc/a"
    ):
        define_a(["doc/b"])
    assert graph.features_by_key[mx.FeatureKey("doc/a")] is first
