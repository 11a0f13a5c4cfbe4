"""A newcomer's path: the CLI from the repository root, METAXY_CONFIG, and errors that say what to fix."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import metaxy_core as mx

REPO = Path(__file__).resolve().parents[2]


def _metaxy(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METAXY_")}
    return subprocess.run(
        [sys.executable, "-m", "metaxy_core.cli", *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "160", "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_works_from_the_repository_root() -> None:
    done = _metaxy("list", "features", cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "video/raw" in done.stdout
    assert "video/stt" in done.stdout


def test_metaxy_config_env_var_points_at_a_config(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "feats.py").write_text(
        "import metaxy_core as mx\n\nclass Doc(mx.Feature, spec=mx.FeatureSpec(key='docs/raw')):\n    title: str\n"
    )
    config = tmp_path / "proj" / "metaxy.toml"
    config.write_text('entrypoints = ["feats"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _metaxy("list", "features", cwd=elsewhere, env={"METAXY_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert "docs/raw" in done.stdout


def test_an_entrypoint_that_raises_shows_the_real_cause(tmp_path: Path) -> None:
    (tmp_path / "feats.py").write_text("import metaxy_core as mx\n\nx = 1 / 0\n")
    (tmp_path / "metaxy.toml").write_text('entrypoints = ["feats"]\n')
    done = _metaxy("list", "features", cwd=tmp_path)
    assert done.returncode != 0
    assert "importing 'feats' failed at feats.py:3: ZeroDivisionError" in done.stderr
    assert "No module named" not in done.stderr
    (tmp_path / "metaxy.toml").write_text('entrypoints = ["featz"]\n')
    missing = _metaxy("list", "features", cwd=tmp_path)
    assert "no module 'featz'" in missing.stderr


def test_cycles_and_missing_upstreams_in_entrypoints(tmp_path: Path) -> None:
    (tmp_path / "feats.py").write_text(
        "import metaxy_core as mx\n\n"
        "class Clip(mx.Feature, spec=mx.FeatureSpec(key='media/clip', deps=['media/thumb'])):\n    pass\n\n"
        "class Thumb(mx.Feature, spec=mx.FeatureSpec(key='media/thumb', deps=[Clip])):\n    pass\n"
    )
    (tmp_path / "metaxy.toml").write_text('entrypoints = ["feats"]\n')
    done = _metaxy("list", "features", cwd=tmp_path)
    assert done.returncode != 0
    assert "Dependency cycle between features: media/clip -> media/thumb -> media/clip" in done.stderr
    (tmp_path / "feats.py").write_text(
        "import metaxy_core as mx\n\n"
        "class Clip(mx.Feature, spec=mx.FeatureSpec(key='media/clip', deps=['media/thumbs'])):\n    pass\n"
    )
    typo = _metaxy("list", "features", cwd=tmp_path)
    assert typo.returncode != 0
    assert "depends on unknown feature 'media/thumbs', which is never defined" in typo.stderr


def test_config_typos_get_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "metaxy.toml"
    config.write_text("hash_lenght = 8\n")
    with pytest.raises(mx.ConfigError, match="Did you mean 'hash_length'"):
        mx.load_config(config)
    config.write_text('[stores.dev]\ntype = "duckdb"\nconfig = { databse = "m.duckdb" }\n')
    with pytest.raises(
        mx.ConfigError, match=r"stores\.dev\.config.*DuckDBMetadataStore has no option\(s\) \['databse'\]"
    ) as info:
        mx.load_config(config).get_store()
    assert "Did you mean 'database'" in str(info.value)
    assert "Valid options:" in str(info.value)


def test_lineage_columns_are_checked_at_definition() -> None:
    class Video(mx.Feature, spec=mx.FeatureSpec(key="v/raw", id_columns=["video_id"])):
        video_id: str
        path: str

    with pytest.raises(mx.FeatureDefinitionError, match=r"lineage on= \['vid'\] must come from 'v/raw'"):

        class Chunk(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="v/chunk",
                id_columns=["chunk_id"],
                deps=[mx.FeatureDep(feature=Video, lineage=mx.LineageRelationship.expansion(on=["vid"]))],
            ),
        ):
            chunk_id: str

    with pytest.raises(
        mx.FeatureDefinitionError, match=r"id column\(s\) \['clip_id'\] must come from 'v/raw'"
    ):

        class Clip(mx.Feature, spec=mx.FeatureSpec(key="v/clip", id_columns=["clip_id"], deps=[Video])):
            clip_id: str
