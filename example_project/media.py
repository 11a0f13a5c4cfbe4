"""Stand-ins for real media: "videos" are small JSON files with an audio track (words) and a frames
track (one character per second, ``F`` = a frame with a face), so the pipeline does real file I/O and
content hashing without codecs. Everything lives under ``data_dir()`` (gitignored).
"""

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import polars as pl

PACKAGE_DIR = Path(__file__).resolve().parent
CHUNK_SECONDS = 10
_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "metaxy",
    "tracks",
    "every",
    "sample",
    "field",
    "by",
    "field",
]


def data_dir() -> Path:
    """``EXAMPLE_DATA_DIR`` or ``example_project/data``."""
    return Path(os.environ.get("EXAMPLE_DATA_DIR", PACKAGE_DIR / "data")).resolve()


def videos_dir() -> Path:
    return data_dir() / "videos"


def chunks_dir() -> Path:
    return data_dir() / "chunks"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_video(video_id: str, *, duration_s: int, audio: str, frames: str) -> Path:
    path = videos_dir() / f"{video_id}.video.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"video_id": video_id, "duration_s": duration_s, "audio": audio, "frames": frames})
    )
    return path


def read_video(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def generate_videos(count: int = 3, *, seed: int = 7) -> list[Path]:
    """Write ``count`` videos (v001, v002, ...) of 25-45 seconds; deterministic for a seed."""
    rng = random.Random(seed)
    paths = []
    for i in range(1, count + 1):
        duration = rng.randint(25, 45)
        audio = " ".join(rng.choice(_WORDS) for _ in range(duration))
        frames = "".join(rng.choice("..F") for _ in range(duration))
        paths.append(write_video(f"v{i:03d}", duration_s=duration, audio=audio, frames=frames))
    return paths


def edit_track(video_id: str, track: str) -> None:
    """Change one track ('audio' or 'frames') of a video, as if it had been re-encoded."""
    path = videos_dir() / f"{video_id}.video.json"
    if not path.exists():
        raise SystemExit(
            f"No video {video_id} in {videos_dir()} (have: {', '.join(list_video_ids()) or 'none'})."
        )
    video = read_video(path)
    if track == "audio":
        video["audio"] = video["audio"] + " edited"
    else:
        video["frames"] = video["frames"][::-1]
    write_video(video_id, duration_s=video["duration_s"], audio=video["audio"], frames=video["frames"])


def split_of(video_id: str) -> str:
    """'test' for about a quarter of the videos, 'train' for the others; fixed by a hash of the id."""
    bucket = int(hashlib.sha256(f"split/{video_id}".encode()).hexdigest(), 16) % 4
    return "test" if bucket == 0 else "train"


def list_video_ids() -> list[str]:
    return sorted(p.name.removesuffix(".video.json") for p in videos_dir().glob("*.video.json"))


def list_videos() -> pl.DataFrame:
    """The samples of ``video/raw``: every video on disk with per-track content hashes as provenance."""
    rows = []
    for path in sorted(videos_dir().glob("*.video.json")):
        video = read_video(path)
        rows.append(
            {
                "video_id": video["video_id"],
                "path": str(path),
                "duration_s": video["duration_s"],
                "split": split_of(video["video_id"]),
                "metaxy_provenance_by_field": {
                    "audio": _digest(video["audio"]),
                    "frames": _digest(video["frames"]),
                },
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "video_id": pl.String,
            "path": pl.String,
            "duration_s": pl.Int64,
            "split": pl.String,
            "metaxy_provenance_by_field": pl.Struct({"audio": pl.String, "frames": pl.String}),
        },
    )


def split_into_chunks(video_id: str, video_path: str) -> list[dict[str, Any]]:
    """Write one chunk file per CHUNK_SECONDS of the video; returns the chunk rows."""
    video = read_video(video_path)
    out = chunks_dir()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, start in enumerate(range(0, video["duration_s"], CHUNK_SECONDS)):
        chunk_id = f"{video_id}_{index:02d}"
        words = video["audio"].split()[start : start + CHUNK_SECONDS]
        path = out / f"{chunk_id}.chunk.json"
        path.write_text(
            json.dumps({"audio": " ".join(words), "frames": video["frames"][start : start + CHUNK_SECONDS]})
        )
        rows.append({"video_id": video_id, "video_chunk_id": chunk_id, "path": str(path), "start_s": start})
    return rows


def count_faces(chunk_path: str) -> int:
    return json.loads(Path(chunk_path).read_text())["frames"].count("F")


def transcribe(video_path: str) -> str:
    return read_video(video_path)["audio"]


def embed(video_path: str) -> str:
    """A stand-in embedding of the frames track: four numbers as a JSON list."""
    frames = read_video(video_path)["frames"]
    halves = [frames[: len(frames) // 2], frames[len(frames) // 2 :]]
    values = [len(frames) / 60, frames.count("F") / max(len(frames), 1)]
    values += [h.count("F") / max(len(h), 1) for h in halves]
    return json.dumps([round(v, 4) for v in values])
