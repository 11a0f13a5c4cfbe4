"""A real project on disk for CLI tests: ``metaxy.toml``, a ``features.py`` entrypoint and a DuckDB file.

The ``metaxy`` CLI runs in a subprocess (``python -m metaxy_core.cli``) inside the project folder,
exactly as a user would run it. The pipeline that fills the store runs in-process against the same
DuckDB file (the store is closed before each CLI call, since DuckDB files take one process at a
time). "Changing the code" rewrites ``features.py``.
"""

import contextlib
import importlib.util
import io
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from subprocess import run as subprocess_run
from typing import Any

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import config as config_module

FEATURES = """\
import metaxy_core as mx


class Video(mx.Feature, spec=mx.FeatureSpec(
        key="example/video",
        fields=[mx.FieldSpec(key="audio", code_version="{video_audio}"), mx.FieldSpec(key="frames", code_version="1")])):
    frames: int
    duration: float


class Crop(mx.Feature, spec=mx.FeatureSpec(
        key="example/crop",
        deps=[mx.FeatureDep(feature=Video)],
        fields=[
            mx.FieldSpec(key="{crop_audio_field}", code_version="{crop_audio}",
                         deps=[mx.FieldDep(feature=Video, fields=["audio"])]),
            mx.FieldSpec(key="frames", code_version="{crop_frames}", deps=[mx.FieldDep(feature=Video, fields=["frames"])]),
        ])):
    crop_path: str


class FaceDetection(mx.Feature, spec=mx.FeatureSpec(
        key="example/face_detection",
        deps=[mx.FeatureDep(feature=Crop)],
        fields=[mx.FieldSpec(key="faces", code_version="1", deps=[mx.FieldDep(feature=Crop, fields=["frames"])])])):
    faces: int


class SpeechToText(mx.Feature, spec=mx.FeatureSpec(
        key="{stt_key}",
        deps=[mx.FeatureDep(feature=Video)],
        fields=[mx.FieldSpec(key="transcription", code_version="1",
                             deps=[mx.FieldDep(feature=Video, fields=["audio"])])])):
    text: str
"""

CONFIG = """\
project = "cli-test"
entrypoints = ["features"]
store = "dev"
hash_length = 16

[stores.dev]
type = "duckdb"
config = {{ database = "meta.duckdb" }}

[stores.other]
type = "duckdb"
config = {{ database = "other.duckdb" }}
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Project:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "meta.duckdb"

    def write_features(
        self,
        *,
        video_audio: str = "1",
        crop_audio: str = "1",
        crop_audio_field: str = "audio",
        crop_frames: str = "1",
        stt_key: str = "example/stt",
    ) -> None:
        source = FEATURES.format(
            video_audio=video_audio,
            crop_audio=crop_audio,
            crop_audio_field=crop_audio_field,
            crop_frames=crop_frames,
            stt_key=stt_key,
        )
        (self.root / "features.py").write_text(source)

    def cli(
        self, *args: str, expect: int | None = 0, env: dict[str, str] | None = None, subprocess: bool = False
    ) -> Result:
        """Run ``metaxy ARGS`` in the project folder; check the exit code unless ``expect`` is None.

        ``subprocess=True`` runs the real ``python -m metaxy_core.cli`` process. Otherwise the same
        entry point runs in this process (``main(argv)``, a fresh feature graph, the project folder as
        working directory): identical code path, without paying ~1 s of interpreter start-up per call.
        """
        run = self._subprocess if subprocess else self._inprocess
        result = run(list(args), {"COLUMNS": "160", "NO_COLOR": "1", **(env or {})})
        if expect is not None and result.returncode != expect:
            raise AssertionError(
                f"metaxy {' '.join(args)} exited {result.returncode}, expected {expect}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def _subprocess(self, args: list[str], env: dict[str, str]) -> Result:
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("METAXY_")}
        proc = subprocess_run(
            [sys.executable, "-m", "metaxy_core.cli", *args],
            cwd=self.root,
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def _inprocess(self, args: list[str], env: dict[str, str]) -> Result:
        from metaxy_core.cli import main

        saved_env = {k: v for k, v in os.environ.items() if k.upper().startswith("METAXY_") or k in env}
        saved_path, saved_cwd = list(sys.path), os.getcwd()
        saved_config = config_module._current
        out, err = io.StringIO(), io.StringIO()
        try:
            for k in saved_env:
                del os.environ[k]
            os.environ.update(env)
            os.chdir(self.root)
            sys.modules.pop("features", None)  # the entrypoint: import it afresh into the new graph
            with mx.FeatureGraph().use(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(args)
        finally:
            os.chdir(saved_cwd)
            sys.path[:] = saved_path
            sys.modules.pop("features", None)
            for k in env:
                os.environ.pop(k, None)
            os.environ.update(saved_env)
            mx.set_config(saved_config)
        return Result(code, out.getvalue(), err.getvalue())

    def cli_json(self, *args: str, env: dict[str, str] | None = None, subprocess: bool = False) -> Any:
        return json.loads(self.cli(*args, env=env, subprocess=subprocess).stdout)

    # -- in-process side (the user's pipeline) --------------------------------------------------
    def features(self) -> dict[str, type[mx.BaseFeature]]:
        """Import the current ``features.py`` into a fresh graph; classes by feature key."""
        graph = mx.FeatureGraph()
        with graph.use():
            name = f"features_{uuid.uuid4().hex[:8]}"
            spec = importlib.util.spec_from_file_location(name, self.root / "features.py")
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        return {str(k): cls for k, cls in graph.features_by_key.items()}

    def store(self) -> mx.DuckDBMetadataStore:
        return mx.DuckDBMetadataStore(database=self.database)


def video_samples(n: int = 3, salt: str = "") -> pl.DataFrame:
    ids = [f"s{i}" for i in range(n)]
    return pl.DataFrame(
        {
            "sample_uid": ids,
            "frames": [10 * (i + 1) for i in range(n)],
            "duration": [1.5 * (i + 1) for i in range(n)],
            "metaxy_provenance_by_field": [{"audio": f"a-{i}{salt}", "frames": f"f-{i}"} for i in range(n)],
        }
    )


def run_pipeline(project: Project, samples: pl.DataFrame | None = None) -> dict[str, int]:
    """Ingest the videos and compute every downstream feature that is new or stale; rows written per key."""
    feats = project.features()
    video = feats["example/video"]
    written: dict[str, int] = {}
    samples = video_samples() if samples is None else samples
    outputs = {
        "crop_path": lambda ids: [f"/crops/{i}.mp4" for i in ids],
        "faces": lambda ids: [len(i) for i in ids],
        "text": lambda ids: [f"hello {i}" for i in ids],
    }
    with project.store() as store:
        inc = store.resolve_update(video, samples=samples)
        written[str(video.spec.key)] = store.write(video, inc.to_process())
        for key, cls in feats.items():
            if cls is video:
                continue
            rows = store.resolve_update(cls).to_process()
            column = next(c for c in cls.user_columns() if c != "sample_uid")
            frame = rows.select("sample_uid", "metaxy_provenance_by_field", "metaxy_provenance").with_columns(
                pl.Series(column, outputs[column](rows["sample_uid"].to_list()))
            )
            written[key] = store.write(cls, frame)
    return written


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "metaxy.toml").write_text(CONFIG.format())
    p = Project(tmp_path)
    p.write_features()
    mx.set_config(mx.load_config(tmp_path / "metaxy.toml"))
    return p
