"""Where the lake lives: local paths, or ``s3a://bucket/prefix`` on an S3 API (AWS S3, MinIO, or the
embedded S3Proxy that `tidemark stack up` runs, tidemark/stack/object_store.py).

Three clients reach the same objects, each configured here from ``ObjectStoreSettings``:

* Spark (delta-spark, the streaming checkpoint) through Hadoop's S3A filesystem: ``spark_conf``
  (hadoop-aws and the AWS SDK bundle from jvm/lib/s3a, endpoint, path-style access, keys);
* delta-rs (``deltalake``: the batch layer's snapshot reads, the Delta-log reader behind dirty hours,
  tiering's file lists and vacuum): ``delta_table`` with ``storage_options``; delta-rs names the
  scheme ``s3://``, Hadoop ``s3a://`` (same bucket and key), so paths are mapped by ``delta_uri``;
* pyarrow's S3 filesystem for the few small files Tidemark reads itself (the stream's identity file,
  Spark's offsets log, Delta commit JSON): ``filesystem``.

**One writer per Delta table on S3.** delta-spark 4.4 commits to s3a:// through
``S3SingleDriverLogStore``: put-if-absent of a commit file is guaranteed only among writers in one
Spark driver (an in-JVM lock). Two drivers committing to one table at once can overwrite each
other's commit. Tidemark's writers of ``events_raw`` are the stream (appends) and tiering's cold move
(its delete, once a day for days older than the retention), which must not overlap: see
docs/production.md for the schedule and for the DynamoDB LogStore that lifts the limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tidemark.config import ObjectStoreSettings, Settings
from tidemark.errors import TidemarkError

S3A = "s3a://"
_FS_CHECKPOINT_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"


class ObjectStoreError(TidemarkError, RuntimeError):
    """The object store could not be reached or lacks what Tidemark needs; the message says what to do."""


def is_s3(path: str) -> bool:
    return path.startswith(S3A)


def delta_uri(path: str) -> str:
    """The table URI delta-rs understands: s3a://b/k -> s3://b/k (object_store's scheme), local unchanged."""
    return "s3://" + path[len(S3A) :] if is_s3(path) else path


def storage_options(store: ObjectStoreSettings | None, path: str) -> dict[str, str] | None:
    """delta-rs (object_store crate) options for ``path``; None for a local path."""
    if not is_s3(path):
        return None
    if store is None:
        raise ObjectStoreError(f"{path} is on an object store, but no object-store settings were passed to reach it")
    opts = {
        "AWS_REGION": store.region,
        "AWS_ENDPOINT_URL": store.endpoint,
        "AWS_ALLOW_HTTP": str(store.endpoint.startswith("http://")).lower(),
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not store.path_style).lower(),
    }
    if store.access_key:
        opts |= {"AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key}
    return opts


def delta_table(store: ObjectStoreSettings | None, path: str, version: int | None = None):
    """``deltalake.DeltaTable`` of ``path`` (local or s3a://)."""
    from deltalake import DeltaTable

    return DeltaTable(delta_uri(path), version=version, storage_options=storage_options(store, path))


def is_delta_table(store: ObjectStoreSettings | None, path: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(delta_uri(path), storage_options=storage_options(store, path))


def filesystem(store: ObjectStoreSettings | None, path: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for ``path``: s3a://b/k -> (b's file system, "k").

    On S3 this is delta-rs's own client (object_store, through ``DeltaStorageHandler``), the one that
    reads the tables: pyarrow's AWS SDK asks for response checksums (``x-amz-checksum-mode``) and
    sends trailing request checksums, which S3-compatible servers such as S3Proxy 2.6 refuse."""
    from pyarrow import fs

    if is_s3(path):
        return fs.PyFileSystem(_handler(store, path)), _split(path)[1]
    if path.startswith("file://"):
        path = path[len("file://") :]
    return fs.LocalFileSystem(), path.rstrip("/")


def _split(path: str) -> tuple[str, str]:
    """s3a://bucket/key/ -> ("bucket", "key")."""
    bucket, _, key = path[len(S3A) :].partition("/")
    return bucket, key.rstrip("/")


def _handler(store: ObjectStoreSettings | None, path: str):
    from deltalake.fs import DeltaStorageHandler

    bucket, _key = _split(path)
    return DeltaStorageHandler(f"s3://{bucket}", storage_options(store, path))


def s3_filesystem(store: ObjectStoreSettings, *, allow_bucket_creation: bool = False):
    from pyarrow import fs

    url = urlparse(store.endpoint)
    return fs.S3FileSystem(
        access_key=store.access_key or None,
        secret_key=store.secret_key or None,
        region=store.region,
        endpoint_override=url.netloc or None,
        scheme=url.scheme or "https",
        force_virtual_addressing=not store.path_style,
        allow_bucket_creation=allow_bucket_creation,
        connect_timeout=5,
        request_timeout=30,
    )


def read_text(store: ObjectStoreSettings | None, path: str) -> str | None:
    """A small file's text, None if it does not exist."""
    if not is_s3(path):
        p = Path(path)
        return p.read_text() if p.exists() else None
    filesystem_, key = filesystem(store, path)
    try:
        with filesystem_.open_input_stream(key) as stream:
            return stream.read().decode()
    except FileNotFoundError:
        return None


def write_text(store: ObjectStoreSettings | None, path: str, text: str) -> None:
    """Write a small file whole (a local write goes through a rename; an S3 PUT is atomic already)."""
    if not is_s3(path):
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(p)
        return
    # The handler's own stream: pyarrow's wrapper around it (PyFileSystem.open_output_stream) hands
    # it pyarrow Buffers, which deltalake 1.6's writer refuses (it takes bytes).
    stream = _handler(store, path)._handler.open_output_stream(_split(path)[1], None)
    stream.write(text.encode())
    stream.close()


def list_names(store: ObjectStoreSettings | None, directory: str) -> list[str]:
    """Base names of the entries of ``directory`` ([] when it does not exist)."""
    from pyarrow import fs

    if not is_s3(directory):
        d = Path(directory)
        return [p.name for p in d.iterdir()] if d.is_dir() else []
    filesystem_, key = filesystem(store, directory)
    return [i.base_name for i in filesystem_.get_file_info(fs.FileSelector(key, allow_not_found=True))]


def object_key(uri: str) -> str:
    """A file URI or path without its scheme: s3a://b/k and s3://b/k -> "b/k", file:/x and /x -> "/x"
    (so files named by Spark and by delta-rs compare equal)."""
    for scheme in (S3A, "s3://"):
        if uri.startswith(scheme):
            return uri[len(scheme) :]
    path = uri.split(":", 1)[1] if uri.startswith("file:") else uri
    return "/" + path.lstrip("/")


def ensure_buckets(store: ObjectStoreSettings) -> list[str]:
    """Create the buckets of the s3a:// roots that do not exist yet. Returns those created."""
    from pyarrow import fs

    s3 = s3_filesystem(store, allow_bucket_creation=True)
    created = []
    for bucket in store.buckets:
        try:
            if s3.get_file_info(bucket).type == fs.FileType.NotFound:
                s3.create_dir(bucket)
                created.append(bucket)
        except OSError as exc:
            raise ObjectStoreError(
                f"bucket {bucket!r} at {store.endpoint} could not be checked or created ({exc}); check "
                f"TIDEMARK_S3_ENDPOINT and the keys (TIDEMARK_S3_ACCESS_KEY/TIDEMARK_S3_SECRET_KEY), or create it"
            ) from exc
    return created


def s3a_jars(store: ObjectStoreSettings) -> list[str]:
    found = sorted(str(p) for p in Path(store.s3a_jars_dir).glob("*.jar"))
    if not any(Path(j).name.startswith("hadoop-aws-") for j in found):
        raise ObjectStoreError(
            f"hadoop-aws is missing from {store.s3a_jars_dir} but a storage root is s3a:// "
            f"({', '.join(store.roots)}): run `make setup` (it fetches jvm/s3a/pom.xml with Maven)"
        )
    return found


def spark_conf(cfg: Settings) -> dict[str, str]:
    """Spark settings for s3a:// roots ({} when every root is local).

    The jars go on the driver's class path (and the executors', under local[*] the same JVM) rather
    than through spark.jars: Spark copies spark.jars into every application's work directory, and the
    AWS SDK bundle alone is ~650 MB. A cluster master gets them through spark.jars as well, the
    normal way for executors on other hosts."""
    store = cfg.object_store
    if not store.enabled:
        return {}
    jars = s3a_jars(store)
    conf = {
        "spark.driver.extraClassPath": ":".join(jars),
        "spark.hadoop.fs.s3a.endpoint": store.endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": store.region,
        "spark.hadoop.fs.s3a.path.style.access": str(store.path_style).lower(),
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(store.endpoint.startswith("https://")).lower(),
        # Delta's log store for s3a (by default S3SingleDriverLogStore: commits are mutually exclusive
        # within this driver only; one writer per table, see the module docstring).
        "spark.delta.logStore.s3a.impl": store.log_store,
        # Hadoop's default is a 60 s wait per retry class; a local store that restarts should be
        # noticed in seconds, and a real one keeps the SDK's own retries.
        "spark.hadoop.fs.s3a.attempts.maximum": "5",
        # The streaming checkpoint (offsets, commits, state) through Hadoop's FileSystem API: the default
        # FileContext-based manager refuses to create a file whose parent directory it cannot see, and
        # an empty directory on S3 is only a marker object that some S3 servers (S3Proxy) never list.
        "spark.sql.streaming.checkpointFileManagerClass": _FS_CHECKPOINT_MANAGER,
        # VACUUM lists the table in up to this many tasks (Spark's default 10000): on S3 every one of
        # them is a round of LIST requests, and a tiering run here spent >10 min in 10k-task stages.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(max(16, 4 * cfg.spark.shuffle_partitions)),
    }
    if store.access_key:
        conf |= {
            "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "spark.hadoop.fs.s3a.access.key": store.access_key,
            "spark.hadoop.fs.s3a.secret.key": store.secret_key,
        }
    return conf
