"""Where the lake lives: s3a:// roots -> the settings of Spark's S3A, delta-rs and the embedded store."""

import pytest
from support.settings import settings_with

from tidemark import object_store
from tidemark.batch.lake import relative
from tidemark.spark import engine_conf

S3 = {"TIDEMARK_LAKE_ROOT": "s3a://lake-bucket/tm/lake", "TIDEMARK_CHECKPOINT_ROOT": "s3a://ckpt-bucket/tm"}


def test_local_roots_need_no_object_store():
    cfg = settings_with({"TIDEMARK_LAKE_ROOT": "/data/lake", "TIDEMARK_CHECKPOINT_ROOT": "/data/ckpt"})
    assert not cfg.object_store.enabled
    assert object_store.spark_conf(cfg) == {}
    assert object_store.storage_options(cfg.object_store, cfg.lake.events_raw) is None


def test_s3a_roots_name_their_buckets_and_default_to_the_embedded_store():
    cfg = settings_with({**S3, "TIDEMARK_S3_PORT": "19999"})
    store = cfg.object_store
    assert store.enabled and not store.external
    assert store.buckets == ["ckpt-bucket", "lake-bucket"]  # the cold root follows the lake root
    assert store.endpoint == "http://127.0.0.1:19999" and store.access_key


def test_an_explicit_endpoint_is_external_and_uses_the_default_credential_chain():
    cfg = settings_with({**S3, "TIDEMARK_S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com"})
    assert cfg.object_store.external and cfg.object_store.access_key == ""
    opts = object_store.storage_options(cfg.object_store, cfg.lake.events_raw)
    assert opts is not None and "AWS_ACCESS_KEY_ID" not in opts and opts["AWS_ALLOW_HTTP"] == "false"
    assert "spark.hadoop.fs.s3a.access.key" not in object_store.spark_conf(cfg)


def test_paths_map_between_hadoop_and_delta_rs():
    assert object_store.delta_uri("s3a://b/lake/events_raw") == "s3://b/lake/events_raw"
    assert object_store.delta_uri("/data/lake") == "/data/lake"
    # Spark names files s3a://, delta-rs s3://: both are relative to the same table root.
    files = ["s3a://b/lake/t/d=1/x.parquet", "s3://b/lake/t/d=1/y.parquet"]
    assert relative(files, "s3a://b/lake/t") == ["d=1/x.parquet", "d=1/y.parquet"]
    assert relative(["file:/data/t/a.parquet"], "/data/t") == ["a.parquet"]


def test_spark_gets_s3a_and_a_checkpoint_manager_that_needs_no_directories(tmp_path):
    (tmp_path / "hadoop-aws-3.5.0.jar").touch()
    cfg = settings_with({**S3, "TIDEMARK_S3A_JARS_DIR": str(tmp_path)})
    conf = object_store.spark_conf(cfg)
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.delta.logStore.s3a.impl"] == "io.delta.storage.S3SingleDriverLogStore"
    assert conf["spark.sql.streaming.checkpointFileManagerClass"].endswith("FileSystemBasedCheckpointFileManager")
    assert str(tmp_path / "hadoop-aws-3.5.0.jar") in conf["spark.driver.extraClassPath"]


def test_missing_hadoop_aws_says_to_run_setup(tmp_path):
    cfg = settings_with({**S3, "TIDEMARK_S3A_JARS_DIR": str(tmp_path)})
    with pytest.raises(object_store.ObjectStoreError, match="make setup"):
        engine_conf(cfg)
