"""A job for the multiprocess test: one root and four children that run in parallel processes and all
write to the same DuckDB file. Loaded by module name in every step process (``dg.reconstructable``)."""

import os
import time

import dagster as dg
import polars as pl

import metaxy_core as mx
import metaxy_dagster as mxd

N_SAMPLES = 50
CHILDREN = ("c1", "c2", "c3", "c4")

_graph = mx.FeatureGraph()
with _graph.use():

    class Root(mx.BaseFeature, spec=mx.FeatureSpec(key="par/root", id_columns=["sample_id"], fields=["x"])):
        sample_id: str

    children = [
        type(
            f"Child{i}",
            (mx.BaseFeature,),
            {"__annotations__": {"sample_id": str, "value": int}},
            spec=mx.FeatureSpec(key=f"par/{name}", id_columns=["sample_id"], deps=[Root], fields=["y"]),
        )
        for i, name in enumerate(CHILDREN)
    ]


def _samples() -> pl.DataFrame:
    ids = [f"s{i:03d}" for i in range(N_SAMPLES)]
    return pl.DataFrame({"sample_id": ids, "metaxy_provenance_by_field": [{"x": f"h{i}"} for i in ids]})


@mxd.metaxy_asset(Root, samples=_samples)
def root(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
    return increment.to_process().select("sample_id")


def _child(feature: type[mx.BaseFeature]) -> dg.AssetsDefinition:
    @mxd.metaxy_asset(feature)
    def body(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        # Long enough that the four steps overlap and contend for the file.
        time.sleep(2.0)
        return increment.to_process().select("sample_id", pl.lit(1).alias("value"))

    return body


ASSETS = [root, *(_child(c) for c in children)]
DATABASE_ENV = "MXD_TEST_PARALLEL_DATABASE"


def parallel_job() -> dg.JobDefinition:
    # Called in every step process: the database path travels in the environment.
    store = mxd.MetaxyStoreResource(type="duckdb", config={"database": os.environ[DATABASE_ENV]})
    defs = dg.Definitions(
        assets=ASSETS,
        jobs=[
            dg.define_asset_job(
                "parallel", selection=[a.key for a in ASSETS], executor_def=dg.multiprocess_executor
            )
        ],
        resources={"metaxy_store": store, "metaxy_io_manager": mxd.MetaxyIOManager(store=store)},
    )
    return defs.resolve_job_def("parallel")
