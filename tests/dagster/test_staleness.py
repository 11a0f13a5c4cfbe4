"""Dagster's own stale status ("Unsynced" in the UI) driven by metaxy data versions and code versions."""

from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import StaleCauseCategory
from dagster._utils.test.data_versions import get_stale_status_resolver

import metaxy_core as mx
from tests.dagster.pipeline import Samples, build_assets, counts, define_features, materialization_metadata

FRESH, STALE = "FRESH", "STALE"


def statuses(instance: dg.DagsterInstance, assets: Sequence[dg.AssetsDefinition]) -> dict[str, str]:
    resolver = get_stale_status_resolver(instance, assets)
    return {a.key.path[-1]: resolver.get_status(a.key).value for a in assets}


def test_data_changes_mark_exactly_the_direct_children_stale(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    f = define_features()
    raw, chunk, faces, stt = assets = build_assets(f, samples)
    assert statuses(instance, assets) == {
        "raw": "MISSING",
        "chunk": "MISSING",
        "faces": "MISSING",
        "stt": "MISSING",
    }
    dg.materialize(assets, instance=instance, resources=res)
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": FRESH, "stt": FRESH}

    # Re-materializing with identical data (nothing new or stale): children stay fresh.
    dg.materialize([raw], instance=instance, resources=res)
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": FRESH, "stt": FRESH}

    # A real change of one video's audio: raw gets a new data version, its direct children turn stale.
    samples.videos["v1"] = ("a1-edited", "f1")
    dg.materialize([raw], instance=instance, resources=res)
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": STALE, "faces": FRESH, "stt": STALE}

    # chunk recomputed (its audio provenance changed, so its data version changed): faces turns
    # stale at the asset level although it only reads frames; metaxy knows there is nothing to do,
    # and materializing faces is a no-op that re-syncs Dagster.
    dg.materialize([raw, chunk, stt], instance=instance, resources=res, selection=[chunk, stt])
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": STALE, "stt": FRESH}
    meta = materialization_metadata(
        dg.materialize(assets, instance=instance, resources=res, selection=[faces])
    )
    assert counts(meta) == {"video/faces": (0, 0, 0, 0)}
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": FRESH, "stt": FRESH}


def test_change_and_revert_round_trips_to_fresh(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    f = define_features()
    raw, _chunk, _faces, _stt = assets = build_assets(f, samples)
    dg.materialize(assets, instance=instance, resources=res)
    samples.videos["v2"] = ("a2", "f2-edited")
    dg.materialize([raw], instance=instance, resources=res)
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": STALE, "faces": FRESH, "stt": STALE}
    # Reverted before anything downstream ran: raw's data version is the one chunk and stt were built from.
    samples.videos["v2"] = ("a2", "f2")
    meta = materialization_metadata(dg.materialize([raw], instance=instance, resources=res))
    assert counts(meta) == {"video/raw": (0, 1, 0, 1)}
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": FRESH, "stt": FRESH}


def test_code_change_marks_the_feature_stale_then_its_children(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    f = define_features()
    dg.materialize(build_assets(f, samples), instance=instance, resources=res)

    with mx.FeatureGraph().use():
        g = define_features(audio_code_version="2")
        raw, chunk, _faces, stt = assets = build_assets(g, samples)
        assert statuses(instance, assets) == {"raw": STALE, "chunk": FRESH, "faces": FRESH, "stt": FRESH}
        (cause,) = get_stale_status_resolver(instance, assets).get_stale_causes(raw.key)
        assert cause.category == StaleCauseCategory.CODE
        assert cause.reason == "has a new code version"

        meta = materialization_metadata(dg.materialize([raw], instance=instance, resources=res))
        assert counts(meta) == {"video/raw": (0, 2, 0, 2)}
        assert meta["video/raw"]["metaxy/changed_fields"] == {"audio": 2}
        assert statuses(instance, assets) == {"raw": FRESH, "chunk": STALE, "faces": FRESH, "stt": STALE}
        causes = get_stale_status_resolver(instance, assets).get_stale_causes(chunk.key)
        assert [(c.category, c.dependency.asset_key if c.dependency else None) for c in causes] == [
            (StaleCauseCategory.DATA, raw.key)
        ]

        meta = materialization_metadata(
            dg.materialize(assets, instance=instance, resources=res, selection=[chunk, stt])
        )
        assert counts(meta) == {"video/chunk": (0, 2, 0, 5), "video/stt": (0, 2, 0, 2)}
        assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": STALE, "stt": FRESH}
