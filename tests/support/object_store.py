"""The lake on an S3 API for tests: the embedded S3Proxy (tidemark/stack/object_store.py) and a
stream run whose lake and checkpoints are s3a:// roots in it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from support.stream import StreamRun
from tidemark.config import Settings
from tidemark.stream.identity import StreamIdentity
from tidemark.stream.options import STREAM_NAME

BUCKET = "tidemark-test"


def s3_roots(prefix: str) -> dict[str, str]:
    """Storage roots under s3a://BUCKET/<prefix> (the cold root follows the lake root)."""
    return {
        "TIDEMARK_LAKE_ROOT": f"s3a://{BUCKET}/{prefix}/lake",
        "TIDEMARK_CHECKPOINT_ROOT": f"s3a://{BUCKET}/{prefix}/checkpoints",
    }


@dataclass
class S3StreamRun(StreamRun):
    """A StreamRun (own topic) whose lake and checkpoint live in the object store, under a fresh prefix."""

    prefix: str = ""

    @classmethod
    def create(cls, tmp_path: Path, name: str) -> S3StreamRun:
        run_id = f"{name}_{uuid.uuid4().hex[:8]}"
        return cls(tmp_path, run_id, prefix=run_id)

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **s3_roots(self.prefix)}

    @property
    def identity(self) -> StreamIdentity:
        cfg = self.cfg
        return StreamIdentity.load_or_create(f"{cfg.spark.checkpoint_root}/{STREAM_NAME}", cfg.object_store)


def stored_files(cfg: Settings, s3a_path: str) -> list[Path]:
    """The files S3Proxy's filesystem backend holds under an s3a:// path (one file per object)."""
    root = cfg.home / "s3proxy" / "data" / s3a_path.removeprefix("s3a://")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
