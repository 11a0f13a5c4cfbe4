"""metaxy_automation_condition: evaluated for real with Dagster's automation evaluator, tick by tick."""

from typing import Any

import dagster as dg

import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets

RAW, CHUNK, FACES, STT = (dg.AssetKey(["video", k]) for k in ("raw", "chunk", "faces", "stt"))


def _with_condition(assets: list[dg.AssetsDefinition], condition: dg.AutomationCondition) -> list[Any]:
    return [
        a.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=condition))
        if a.key != RAW
        else a
        for a in assets
    ]


class Ticks:
    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None

    def requested(self) -> set[dg.AssetKey]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {k for k in (CHUNK, FACES, STT) if result.get_num_requested(k)}


def test_no_op_upstream_runs_do_not_cascade(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    assets = _with_condition(build_assets(features, samples), mxd.metaxy_automation_condition())
    defs = dg.Definitions(assets=assets, resources=res)
    dg.materialize(assets, instance=instance, resources=res)
    ticks = Ticks(defs, instance)
    assert ticks.requested() == set()

    # raw runs again with nothing new: same data version, so nothing downstream has work
    dg.materialize(assets, instance=instance, resources=res, selection=[RAW])
    assert ticks.requested() == set()

    # v1's audio changes: raw's data version changes; its children have work, and faces joins the
    # same run (it will find nothing to do, since it reads frames only, and keep its data version)
    samples.videos["v1"] = ("a1-new", "f1")
    dg.materialize(assets, instance=instance, resources=res, selection=[RAW])
    assert ticks.requested() == {CHUNK, FACES, STT}
    assert ticks.requested() == set()  # handled: not requested again on the next tick


def test_eager_would_cascade_on_a_no_op(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    """Why the metaxy condition exists: eager() requests children of any new materialization."""
    assets = _with_condition(build_assets(features, samples), dg.AutomationCondition.eager())
    defs = dg.Definitions(assets=assets, resources=res)
    dg.materialize(assets, instance=instance, resources=res)
    ticks = Ticks(defs, instance)
    ticks.requested()
    dg.materialize(assets, instance=instance, resources=res, selection=[RAW])
    assert ticks.requested() == {CHUNK, FACES, STT}


def test_a_code_version_bump_requests_the_asset(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    from tests.dagster.pipeline import define_features

    assets = _with_condition(build_assets(features, samples), mxd.metaxy_automation_condition())
    dg.materialize(assets, instance=instance, resources=res)
    ticks = Ticks(dg.Definitions(assets=assets, resources=res), instance)
    assert ticks.requested() == set()
    bumped = _with_condition(
        build_assets(define_features(faces_code_version="2"), samples), mxd.metaxy_automation_condition()
    )
    ticks.defs = dg.Definitions(assets=bumped, resources=res)
    assert ticks.requested() == {FACES}
