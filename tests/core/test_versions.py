"""Definition-level versions: exact formulas and their golden values."""

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import metaxy_core as mx
from tests.graphs import expansion_features


def h(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def versioning_graph(audio_code_version: str = "1") -> dict[str, type[mx.BaseFeature]]:
    """The reference versioning graph, in its own isolated FeatureGraph."""
    with mx.FeatureGraph().use():

        class Video(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="example/video",
                fields=[
                    mx.FieldSpec(key="audio", code_version=audio_code_version),
                    mx.FieldSpec(key="frames", code_version="1"),
                ],
            ),
        ):
            frames: int
            duration: float
            size: int

        class Crop(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="example/crop",
                deps=[mx.FeatureDep(feature=Video)],
                fields=[
                    mx.FieldSpec(
                        key="audio", code_version="1", deps=[mx.FieldDep(feature=Video, fields=["audio"])]
                    ),
                    mx.FieldSpec(
                        key="frames", code_version="1", deps=[mx.FieldDep(feature=Video, fields=["frames"])]
                    ),
                ],
            ),
        ):
            pass

        class FaceDetection(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="example/face_detection",
                deps=[mx.FeatureDep(feature=Crop)],
                fields=[
                    mx.FieldSpec(
                        key="faces", code_version="1", deps=[mx.FieldDep(feature=Crop, fields=["frames"])]
                    )
                ],
            ),
        ):
            pass

        class SpeechToText(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="example/stt",
                deps=[mx.FeatureDep(feature=Video)],
                fields=[
                    mx.FieldSpec(
                        key="transcription",
                        code_version="1",
                        deps=[mx.FieldDep(feature=Video, fields=["audio"])],
                    )
                ],
            ),
        ):
            pass

    return {"video": Video, "crop": Crop, "face_detection": FaceDetection, "stt": SpeechToText}


def expansion_graph(audio_code_version: str = "1") -> dict[str, type[mx.BaseFeature]]:
    """The reference expansion graph, in its own graph."""
    with mx.FeatureGraph().use():
        video, chunk, faces = expansion_features(audio_code_version)
    return {"raw": video, "chunk": chunk, "faces": faces}


@pytest.fixture
def hash_length_64() -> None:
    mx.set_config(mx.load_config(hash_length=64))  # the autouse fixture restores the default


@pytest.fixture
def hash_length_8() -> None:
    mx.set_config(mx.load_config(hash_length=8))


def summary(features: dict[str, type[mx.BaseFeature]], prefix: int) -> dict[str, object]:
    return {
        name: (cls.feature_version()[:prefix], {k: v[:prefix] for k, v in cls.field_versions().items()})
        for name, cls in features.items()
    }


GOLDEN_VERSIONING = {
    "video": ("bc9ca835", {"audio": "22742381", "frames": "794116a9"}),
    "crop": ("3ac04df8", {"audio": "76c8bdc9", "frames": "abc79017"}),
    "face_detection": ("1ac83b07", {"faces": "2d75f0bd"}),
    "stt": ("c83a754a", {"transcription": "ac412b3c"}),
}
GOLDEN_VERSIONING_BUMPED = {
    "video": ("6db302e5", {"audio": "09c8398b", "frames": "794116a9"}),
    "crop": ("54dc7f8a", {"audio": "f3130c0f", "frames": "abc79017"}),
    "face_detection": ("1ac83b07", {"faces": "2d75f0bd"}),
    "stt": ("066d34fc", {"transcription": "05841013"}),
}


@pytest.mark.usefixtures("hash_length_64")
def test_versioning_golden_values() -> None:
    features = versioning_graph()
    assert summary(features, 8) == GOLDEN_VERSIONING
    for cls in features.values():
        assert len(cls.feature_version()) == 64
        assert all(len(v) == 64 for v in cls.field_versions().values())
    graph = features["video"].graph
    assert graph.snapshot_version[:8] == "8468950d"
    assert len(graph.snapshot_version) == 64


@pytest.mark.usefixtures("hash_length_64")
def test_versioning_golden_values_after_audio_bump() -> None:
    before = versioning_graph("1")
    after = versioning_graph("2")  # a second isolated graph with the same keys
    assert summary(after, 8) == GOLDEN_VERSIONING_BUMPED
    assert after["face_detection"].feature_version() == before["face_detection"].feature_version()
    assert after["video"].field_versions()["frames"] == before["video"].field_versions()["frames"]
    assert after["video"].graph.snapshot_version != before["video"].graph.snapshot_version
    # the first graph is untouched by the second definition
    assert summary(before, 8) == GOLDEN_VERSIONING


@pytest.mark.usefixtures("hash_length_64")
def test_versions_follow_the_formulas_literally() -> None:
    f = versioning_graph()
    n = 64
    video_audio = h("example/video.audio" + "1", n)
    video_frames = h("example/video.frames" + "1", n)
    crop_audio = h("example/crop.audio" + "1" + video_audio, n)
    crop_frames = h("example/crop.frames" + "1" + video_frames, n)
    faces = h("example/face_detection.faces" + "1" + crop_frames, n)
    transcription = h("example/stt.transcription" + "1" + video_audio, n)
    video = h("audio" + video_audio + "frames" + video_frames, n)
    crop = h("audio" + crop_audio + "frames" + crop_frames, n)
    face_detection = h("faces" + faces, n)
    stt = h("transcription" + transcription, n)

    assert f["video"].field_versions() == {"audio": video_audio, "frames": video_frames}
    assert f["crop"].field_versions() == {"audio": crop_audio, "frames": crop_frames}
    assert f["face_detection"].field_versions() == {"faces": faces}
    assert f["stt"].field_versions() == {"transcription": transcription}
    assert [c.feature_version() for c in f.values()] == [video, crop, face_detection, stt]
    assert f["video"].feature_code_version() == h("audio1frames1", n)
    assert f["face_detection"].feature_code_version() == h("faces1", n)
    snapshot = h(
        "example/crop"
        + crop
        + "example/face_detection"
        + face_detection
        + "example/stt"
        + stt
        + "example/video"
        + video,
        n,
    )
    assert f["video"].graph.snapshot_version == snapshot


@pytest.mark.usefixtures("hash_length_64")
def test_multiple_parents_sorted_by_fq_and_deduplicated() -> None:
    f = versioning_graph()
    with f["video"].graph.use():

        class Mix(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="example/mix",
                deps=[f["stt"], f["crop"]],
                fields=[
                    mx.FieldSpec(
                        "m",
                        code_version=7,
                        deps=[
                            mx.FieldDep(feature=f["stt"]),
                            mx.FieldDep(feature=f["crop"], fields=["frames", "audio"]),
                            mx.FieldDep(feature=f["crop"], fields=["audio"]),  # duplicate parent
                        ],
                    )
                ],
            ),
        ):
            pass

    crop, stt = f["crop"].field_versions(), f["stt"].field_versions()
    expected = h("example/mix.m" + "7" + crop["audio"] + crop["frames"] + stt["transcription"], 64)
    assert Mix.field_versions() == {"m": expected}
    assert [r.fq for r in Mix.graph.field_parents(Mix.spec.key, mx.FieldKey("m"))] == [
        "example/crop.audio",
        "example/crop.frames",
        "example/stt.transcription",
    ]


@pytest.mark.usefixtures("hash_length_8")
def test_expansion_golden_values() -> None:
    before = expansion_graph("1")
    assert summary(before, 8) == {
        "raw": ("d842b740", {"audio": "7132721c", "frames": "3f6f401c"}),
        "chunk": ("7dc3712a", {"audio": "1549b1fa", "frames": "df8943d3"}),
        "faces": ("52f055e3", {"faces": "0561bd8c"}),
    }
    assert all(len(c.feature_version()) == 8 for c in before.values())
    after = expansion_graph("2")
    assert summary(after, 8) == {
        "raw": ("6e5a4ab8", {"audio": "f8e35296", "frames": "3f6f401c"}),
        "chunk": ("504507a9", {"audio": "7948d163", "frames": "df8943d3"}),
        "faces": ("52f055e3", {"faces": "0561bd8c"}),
    }


def test_default_hash_length_is_16() -> None:
    """No config at all: 16 hex chars. Parentless values (root field versions, feature code versions)
    are prefixes of their 64-char form; everything downstream hashes *truncated* parents,
    so it is not."""
    short = versioning_graph()
    assert mx.get_config().hash_length == 16
    video, crop = short["video"], short["crop"]
    assert {
        len(video.feature_version()),
        len(video.feature_code_version()),
        len(video.graph.snapshot_version),
    } == {16}
    assert all(len(v) == 16 for c in short.values() for v in c.field_versions().values())
    video_audio = h("example/video.audio1", 16)
    assert video.field_versions()["audio"] == video_audio
    assert crop.field_versions()["audio"] == h("example/crop.audio1" + video_audio, 16)
    short_values = (
        video.field_versions(),
        video.feature_code_version(),
        crop.field_versions(),
        video.feature_version(),
    )

    mx.set_config(mx.load_config(hash_length=64))
    long = versioning_graph()
    assert long["video"].feature_version()[:8] == "bc9ca835"
    assert long["video"].field_versions()["audio"][:16] == short_values[0]["audio"]
    assert long["video"].field_versions()["frames"][:16] == short_values[0]["frames"]
    assert long["video"].feature_code_version()[:16] == short_values[1]
    assert long["crop"].field_versions()["audio"][:16] != short_values[2]["audio"]
    assert long["video"].feature_version()[:16] != short_values[3]
    # classes defined earlier follow the current setting too (versions are computed lazily)
    assert len(video.feature_version()) == 64


def test_hash_length_from_environment_in_a_fresh_process(tmp_path: Path) -> None:
    """METAXY_HASH_LENGTH=64 works without a config file and without mx.init()."""
    script = tmp_path / "versions.py"
    script.write_text(
        textwrap.dedent(
            """
            import metaxy_core as mx

            class Video(mx.Feature, spec=mx.FeatureSpec(
                    key="example/video",
                    fields=[mx.FieldSpec("audio", code_version="1"), mx.FieldSpec("frames", code_version="1")])):
                pass

            print(Video.feature_version())
            print(mx.get_config().source)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAXY_")}
    env["METAXY_HASH_LENGTH"] = "64"
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    version, source = result.stdout.split()
    assert len(version) == 64
    assert version[:8] == "bc9ca835"
    assert version == h(
        "audio" + h("example/video.audio1", 64) + "frames" + h("example/video.frames1", 64), 64
    )
    assert source == "None"


def test_hash_length_from_environment_is_read_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAXY_HASH_LENGTH", "8")
    features = versioning_graph()
    assert features["video"].feature_version() == h(
        "audio" + h("example/video.audio1", 8) + "frames" + h("example/video.frames1", 8), 8
    )
