"""Aggregation (N:1): recordings of speakers are summarised into one embedding per speaker.

    python examples/aggregation_demo.py

Walks through: 4 recordings of 2 speakers -> 2 embeddings; a rerun finds nothing; one recording's
content changes -> only its speaker is recomputed; a recording is added -> only that speaker; a final
rerun finds nothing.
"""

import polars as pl

import metaxy_core as mx


class Recording(
    mx.BaseFeature, spec=mx.FeatureSpec(key="audio/recording", id_columns=["recording_id"], fields=["audio"])
):
    recording_id: str
    speaker_id: str


class SpeakerEmbedding(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="audio/speaker_embedding",
        id_columns=["speaker_id"],
        deps=[
            mx.FeatureDep(feature=Recording, lineage=mx.LineageRelationship.aggregation(on=["speaker_id"]))
        ],
        fields=["embedding"],
    ),
):
    speaker_id: str
    dim: int


def sync(store: mx.MetadataStore, recordings: list[tuple[str, str, str]], title: str) -> None:
    samples = pl.DataFrame(
        {
            "recording_id": [r for r, _, _ in recordings],
            "speaker_id": [s for _, s, _ in recordings],
            "metaxy_provenance_by_field": [{"audio": content} for _, _, content in recordings],
        }
    )
    inc = store.resolve_update(Recording, samples=samples)
    for part in (inc.new, inc.stale):
        if len(part):
            store.write(Recording, part)
    inc = store.resolve_update(SpeakerEmbedding)
    todo = inc.to_process()
    print(f"{title:32} speakers {inc.summary()}  recompute: {sorted(todo['speaker_id'].to_list())}")
    if len(todo):
        store.write(
            SpeakerEmbedding,
            todo.select("speaker_id", "metaxy_provenance_by_field", "metaxy_provenance", dim=pl.lit(192)),
        )


def main() -> None:
    recordings = [("r1", "alice", "h1"), ("r2", "alice", "h2"), ("r3", "bob", "h3"), ("r4", "bob", "h4")]
    with mx.DuckDBMetadataStore(database=":memory:") as store:
        sync(store, recordings, "initial run")
        sync(store, recordings, "rerun")
        recordings[1] = ("r2", "alice", "h2-denoised")
        sync(store, recordings, "r2 content changed")
        recordings.append(("r5", "bob", "h5"))
        sync(store, recordings, "r5 added")
        sync(store, recordings, "final rerun")


if __name__ == "__main__":
    main()
