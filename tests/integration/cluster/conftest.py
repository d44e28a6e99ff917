"""The cluster profile (TIDEMARK_STACK=cluster) for the tests of this folder: three KRaft brokers and a
Spark standalone cluster (a master, two 1-core workers), started once per module from the same code as
`TIDEMARK_STACK=cluster tidemark stack up`, next to the session's ClickHouse and Redis (shared, not a
second copy). The session's single broker keeps running: the cluster's brokers take its ports + 4
(+ 14, + 24), the Spark daemons follow from those (config.StackSettings).

The lake and checkpoints live on the object store (s3a:// in the embedded S3Proxy, which the profile's
`stack up` starts because the roots are s3a://): the production shape, Spark cluster + 3 brokers + an
S3 lake. Each test gets its own prefix (`storage_roots`); TIDEMARK_TEST_CLUSTER_STORAGE=local puts
them in local directories instead, to tell a cluster fault from an object-store one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tidemark.config import Settings, load

BUCKET = "s3a://tidemark-cluster"


def _local() -> bool:
    return os.environ.get("TIDEMARK_TEST_CLUSTER_STORAGE") == "local"


@pytest.fixture(scope="module")
def cluster(stack) -> Iterator[Settings]:
    from tidemark.stack import services

    if stack.kafka.external:
        pytest.skip("Kafka is external: the cluster profile starts embedded brokers")
    env = {
        "TIDEMARK_STACK": "cluster",
        "TIDEMARK_KAFKA_PORT": str(stack.kafka.port + 4),
        "TIDEMARK_KAFKA_CONTROLLER_PORT": str(stack.kafka.controller_port + 4),
    }
    if not _local():  # s3a roots: `stack up` starts S3Proxy and creates the bucket
        env |= {"TIDEMARK_LAKE_ROOT": f"{BUCKET}/lake", "TIDEMARK_CHECKPOINT_ROOT": f"{BUCKET}/checkpoints"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        cfg = load()
        mine = services.KafkaNode | services.SparkMaster | services.SparkWorker | services.ObjectStore
        own = [s for s in services.services(cfg) if isinstance(s, mine)]
        try:
            services.up(cfg)
            yield cfg
        finally:
            if os.environ.get("TIDEMARK_KEEP_STACK") != "1":
                services.stop(own)  # workers before the master; the session's ClickHouse and Redis stay


@pytest.fixture
def storage_roots(tmp_path) -> tuple[str, str]:
    """(lake root, checkpoint root) of one test's run."""
    if _local():
        return str(tmp_path / "lake"), str(tmp_path / "checkpoints")
    root = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    return f"{root}/lake", f"{root}/checkpoints"
