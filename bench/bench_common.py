"""Pieces the benchmarks share: the reference graph, its input samples, and interleaved timing.

The graph: ``example/video`` (root; fields audio, frames) -> ``example/crop`` (audio <-
video.audio, frames <- video.frames) -> ``example/face_detection`` (faces <- crop.frames);
``example/video`` -> ``example/stt`` (transcription <- video.audio).
"""

from __future__ import annotations

import gc
import os
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1024 * 1024
CHANGE_FRACTION = 0.01


# -- measurement helpers ---------------------------------------------------------------------------
def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (Linux ``clear_refs`` 5); False if unsupported."""
    _peak_rss_mb()  # fold the peak so far into the process-wide peak first
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


_PROCESS_PEAK_MB = 0.0


def _peak_rss_mb() -> float:
    """Peak RSS since the last reset (VmHWM), falling back to the whole-process peak.

    Also folds it into the process-wide peak: resetting VmHWM resets ``ru_maxrss`` as well, so the
    per-size peak is the maximum over all steps.
    """
    global _PROCESS_PEAK_MB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
        if match:
            peak = int(match.group(1)) / 1024
    except OSError:
        pass
    _PROCESS_PEAK_MB = max(_PROCESS_PEAK_MB, peak)
    return peak


@dataclass
class Measured:
    seconds: float
    cpu: float
    all_seconds: list[float]
    rss_mb: float
    result: Any = None


Stat = Callable[[list[float]], float]


def measure_many(fns: dict[str, Callable[[], Any]], repeat: int, stat: Stat = min) -> dict[str, Measured]:
    """Run each function ``repeat`` times, interleaved (a, b, c, a, b, c, ...), so background load hits
    the store and its floor alike. Per function: wall and CPU time summarised with ``stat`` (``min``,
    best of R, is robust when other processes share the cores) and peak RSS. Each round starts by
    dropping the previous round's results, so a function's peak is its own work plus the results of
    the functions before it in the same round: put the one whose result is kept (and large) last."""
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    rss: dict[str, float] = dict.fromkeys(fns, 0.0)
    results: dict[str, Any] = {}
    for _ in range(repeat):
        results.clear()
        for name, fn in fns.items():
            gc.collect()
            _reset_peak_rss()
            wall, cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            rss[name] = max(rss[name], _peak_rss_mb())
    return {k: Measured(stat(walls[k]), stat(cpus[k]), walls[k], rss[k], results[k]) for k in fns}


def measure(fn: Callable[[], Any], repeat: int = 1, stat: Stat = min) -> Measured:
    return measure_many({"fn": fn}, repeat, stat)["fn"]


def process_peak_mb() -> float:
    """Peak RSS over the whole process so far (the maximum over every reset window)."""
    return max(_peak_rss_mb(), _PROCESS_PEAK_MB)


# -- the feature graph -----------------------------------------------------------------------------
def define_features() -> dict[str, Any]:
    import metaxy_core as mx

    graph = mx.FeatureGraph()
    with graph.use():

        class Video(
            mx.Feature,
            spec=mx.FeatureSpec(
                key="example/video",
                fields=[mx.FieldSpec("audio", code_version="1"), mx.FieldSpec("frames", code_version="1")],
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
                        "audio", code_version="1", deps=[mx.FieldDep(feature=Video, fields=["audio"])]
                    ),
                    mx.FieldSpec(
                        "frames", code_version="1", deps=[mx.FieldDep(feature=Video, fields=["frames"])]
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
                        "faces", code_version="1", deps=[mx.FieldDep(feature=Crop, fields=["frames"])]
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
                        "transcription", code_version="1", deps=[mx.FieldDep(feature=Video, fields=["audio"])]
                    )
                ],
            ),
        ):
            pass

    return {"graph": graph, "video": Video, "crop": Crop, "faces": FaceDetection, "stt": SpeechToText}


def make_samples(n: int) -> Any:
    """N root samples: zero-padded string ids, three user columns, content-hash-like user values."""
    import polars as pl
    import polars_hash  # noqa: F401  (registers .chash)

    ids = pl.int_range(0, n, eager=True, dtype=pl.Int64)
    frame = pl.DataFrame({"sample_uid": ids.cast(pl.String).str.zfill(10), "frames": ids, "size": ids * 7})
    return frame.with_columns(
        duration=(pl.col("frames") % 600).cast(pl.Float64) / 10,
        metaxy_provenance_by_field=pl.struct(
            audio=(pl.lit("audio:") + pl.col("sample_uid")).chash.sha2_256().str.slice(0, 16),
            frames=(pl.lit("frames:") + pl.col("sample_uid")).chash.sha2_256().str.slice(0, 16),
        ),
    ).select("sample_uid", "frames", "duration", "size", "metaxy_provenance_by_field")


def load_samples(n: int, workdir: Path) -> Any:
    """``make_samples(n)``, built in a separate process and read back from a parquet file in ``workdir``.

    Building the frame leaves the allocator holding its intermediates (the full 64-character hashes
    before slicing): about 1.8 GB at 10M samples that the process never uses again but keeps. A
    pipeline reads its inputs from files; so does the benchmark, so that its peak RSS is the input
    frame plus the store's work, not the cost of making up the input.
    """
    import subprocess
    import sys

    import polars as pl

    path = Path(workdir) / f"samples_{n}.parquet"
    if not path.exists():
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from bench_common import make_samples; "
            "make_samples(int(sys.argv[2])).write_parquet(sys.argv[3])"
        )
        here = str(Path(__file__).resolve().parent)
        subprocess.run([sys.executable, "-c", code, here, str(n), str(path)], check=True)
    return pl.read_parquet(path)


def change_audio(samples: Any, fraction: float, seed: int = 7) -> tuple[Any, int]:
    """Give ``fraction`` of the samples (random, seeded) a new audio user value."""
    import polars as pl

    n_changed = round(samples.height * fraction)
    chosen = samples.select("sample_uid").sample(n=n_changed, seed=seed).with_columns(chosen=pl.lit(True))
    pbf = pl.col("metaxy_provenance_by_field")
    audio = pbf.struct.field("audio")
    changed = (
        samples.join(chosen, on="sample_uid", how="left", maintain_order="left")
        .with_columns(
            pl.struct(
                audio=pl.when(pl.col("chosen")).then(pl.lit("changed-") + audio).otherwise(audio),
                frames=pbf.struct.field("frames"),
            ).alias("metaxy_provenance_by_field")
        )
        .drop("chosen")
    )
    return changed, n_changed


def pin_cpus(threads: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning a child process to the first ``threads`` CPUs (None if that is all)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) <= threads:
        return None
    chosen = set(cpus[:threads])
    return lambda: os.sched_setaffinity(0, chosen)


# -- the polars floor (SQLite has no sha256: read the columns, hash and join in polars) -------------------
CROP_FIELDS = ("audio", "frames")


def polars_expected(up: Any, hash_length: int = 16) -> Any:
    """Expected crop provenance from video rows: a LazyFrame of ``sample_uid``, ``dv__<field>`` (the
    video data version per field) -> ``sample_uid``, ``p__<field>``, ``prov``."""
    import polars as pl
    import polars_hash  # noqa: F401  (registers .chash)

    def h(parts: list[Any]) -> Any:
        exprs = [pl.lit(p) if isinstance(p, str) else p.fill_null("") for p in parts]
        return pl.concat_str(exprs, separator="|").chash.sha2_256().str.slice(0, hash_length)

    per_field = [
        h([f"example/crop.{f}", "1", f"example/video.{f}", pl.col(f"dv__{f}")]).alias(f"p__{f}")
        for f in CROP_FIELDS
    ]
    sample: list[Any] = []
    for f in CROP_FIELDS:
        sample += [f, pl.col(f"p__{f}")]
    return up.select("sample_uid", *per_field).with_columns(h(sample).alias("prov"))


def polars_floor_counts(up: Any, stored: Any, hash_length: int = 16) -> dict[str, int]:
    """New / stale / orphaned counts: ``polars_expected(up)`` full-joined with ``stored`` (LazyFrame of
    ``sample_uid``, ``s_prov``)."""
    import polars as pl

    e = polars_expected(up, hash_length).with_columns(pl.lit(True).alias("in_e"))
    s = stored.with_columns(pl.lit(True).alias("in_s"))
    j = e.join(s, on="sample_uid", how="full", coalesce=True)
    out = j.select(
        pl.col("in_s").is_null().sum().alias("new"),
        (pl.col("in_e") & pl.col("in_s") & pl.col("prov").ne_missing(pl.col("s_prov"))).sum().alias("stale"),
        pl.col("in_e").is_null().sum().alias("orphaned"),
    ).collect()
    return {k: int(v) for k, v in out.row(0, named=True).items()}
