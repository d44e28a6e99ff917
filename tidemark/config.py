"""The one place Tidemark reads its environment.

Every address, path and tunable lives here with an embedded default, so a
fresh clone runs against the embedded stack with no configuration, and
production swaps in real Kafka / ClickHouse / Redis / object storage by
setting environment variables only.

A service whose address variable is set explicitly in the environment is
*external*: ``tidemark stack up`` does not start it, it only checks it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def _float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None


def _pairs(name: str) -> dict[str, str]:
    """``k=v,k2=v2`` -> dict (values may not contain commas)."""
    pairs = {}
    for item in filter(None, (p.strip() for p in _env(name, "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"environment variable {name}: {item!r} is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


def _is_set(name: str) -> bool:
    return bool(os.environ.get(name))


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    external: bool
    port: int  # embedded broker's client (PLAINTEXT) port
    topic: str
    partitions: int
    dead_letter_topic: str
    # The embedded Apache Kafka (KRaft, one combined broker+controller node), unused when external:
    controller_port: int  # its KRaft controller listener
    heap: str  # its JVM heap (-Xmx/-Xms), e.g. "512m": it shares the box with Spark
    jars_dir: str  # its jars, fetched by `make setup` (jvm/kafka/pom.xml)
    # Replication of the topics Tidemark creates (io.kafka_admin.ensure_topic): -1 takes the broker's
    # default (1 on the embedded broker); the cluster profile asks for 3, acked by at least 2.
    replication_factor: int = -1
    min_insync_replicas: int | None = None
    # Embedded KRaft nodes: 1, or 3 under TIDEMARK_STACK=cluster (stack/kafka_cluster.py); node i (from 0)
    # listens on port + 10*i and controller_port + 10*i, so the test and worktree port schemes move them too.
    nodes: int = 1
    # Extra consumer settings (security, timeouts) for the stream, from
    # TIDEMARK_KAFKA_CLIENT_OPTIONS="security.protocol=SASL_SSL,sasl.mechanism=PLAIN";
    # passed to Spark's kafka source as kafka.* options. (The generator and the admin
    # helpers talk to the embedded or a plaintext broker only.)
    client_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StackSettings:
    """TIDEMARK_STACK: which embedded topology `tidemark stack up` runs. ``embedded`` (the default): one
    KRaft broker, Spark in-process (local[2]). ``cluster``: three KRaft brokers (replication 3,
    min.insync.replicas 2) and a Spark standalone cluster (a master and two 1-core workers on 127.0.0.1,
    from pyspark's own spark-class) that the jobs reach as SPARK_MASTER=spark://127.0.0.1:<master port>."""

    profile: str
    # The Spark cluster's six ports in a row from here (default TIDEMARK_KAFKA_PORT + 78, so whatever
    # moves Kafka moves them too): master, master UI, then each worker's port and UI.
    spark_port_base: int
    spark_workers: int
    spark_worker_cores: int
    spark_worker_memory: str  # what a worker offers; one executor of spark.executor.memory (1g) fits

    @property
    def cluster(self) -> bool:
        return self.profile == "cluster"

    @property
    def spark_master_port(self) -> int:
        return self.spark_port_base

    @property
    def spark_master_ui_port(self) -> int:
        return self.spark_port_base + 1

    @property
    def spark_master_url(self) -> str:
        return f"spark://127.0.0.1:{self.spark_master_port}"

    def spark_worker_ports(self, index: int) -> tuple[int, int]:
        """(port, UI port) of worker ``index`` (from 0)."""
        return self.spark_port_base + 2 + 2 * index, self.spark_port_base + 3 + 2 * index


@dataclass(frozen=True)
class ClickHouseSettings:
    host: str
    port: int
    http_port: int
    interserver_port: int
    user: str
    password: str
    database: str
    reader_user: str
    reader_password: str
    reader_max_execution_s: int
    external: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterSettings:
    """The production ClickHouse topology that `tidemark db ddl|migrate --profile production` renders
    (tidemark/clickhouse_ddl.py); the embedded profile ignores it."""

    name: str = "tidemark"  # the <remote_servers> cluster every ON CLUSTER statement targets
    read_database: str = "tidemark_all"  # Distributed tables for reads, same names as the storage tables
    storage_policy: str = "tidemark_tiered"  # a policy with a hot (default) volume and a cold one
    cold_volume: str = "cold"  # where TTL moves rollups that left the hot tier
    tenant_role: str = "tidemark_tenant_reader"  # role of per-tenant reader users (row policies)
    tenant_setting: str = "SQL_tidemark_tenant"  # the constant custom setting naming a reader's tenant


@dataclass(frozen=True)
class RedisSettings:
    url: str
    external: bool
    port: int


@dataclass(frozen=True)
class LakeSettings:
    root: str

    def table(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    @property
    def events_raw(self) -> str:
        return self.table("events_raw")

    @property
    def events_rejected(self) -> str:
        return self.table("events_rejected")


@dataclass(frozen=True)
class ObjectStoreSettings:
    """The S3 API behind ``s3a://`` lake, checkpoint and cold roots (tidemark/object_store.py).

    Embedded: when a root is s3a:// and TIDEMARK_S3_ENDPOINT is not set, `tidemark stack up` runs
    S3Proxy (filesystem backend, under TIDEMARK_HOME) on 127.0.0.1:``port`` and creates the roots'
    buckets. With TIDEMARK_S3_ENDPOINT set (MinIO, AWS, ...) the store is external: only checked."""

    roots: tuple[str, ...]  # the s3a:// roots in use (lake, checkpoints, cold); empty: no object store
    endpoint: str  # S3 API URL, e.g. http://127.0.0.1:19070 or https://s3.eu-west-1.amazonaws.com
    external: bool
    port: int  # the embedded S3Proxy's port
    access_key: str  # "" with secret_key "": the AWS default credential chain (env, profile, instance role)
    secret_key: str
    region: str
    path_style: bool  # bucket in the path (S3Proxy, MinIO) rather than in the host name (AWS)
    heap: str  # the embedded S3Proxy's JVM heap
    # delta-spark's LogStore for s3a://: S3SingleDriverLogStore (one writing driver per table) unless a
    # multi-driver one is configured (io.delta.storage.S3DynamoDBLogStore; docs/production.md)
    log_store: str
    jars_dir: str  # S3Proxy's jars (jvm/s3proxy/pom.xml)
    s3a_jars_dir: str  # hadoop-aws and the AWS SDK bundle for Spark (jvm/s3a/pom.xml)

    @property
    def enabled(self) -> bool:
        return bool(self.roots)

    @property
    def buckets(self) -> list[str]:
        return sorted({r.split("://", 1)[1].split("/", 1)[0] for r in self.roots})


@dataclass(frozen=True)
class SparkSettings:
    master: str
    shuffle_partitions: int
    driver_memory: str
    checkpoint_root: str
    trigger_seconds: float
    max_offsets_per_trigger: int
    dedup_window: str  # watermark delay on arrival time: how long an event_id is remembered
    allowed_lateness_s: int  # arrival minus event time beyond which an event is late
    jars_dir: str  # Spark's Kafka source and delta-spark jars, fetched by `make setup` (jvm/spark/pom.xml)
    starting_offsets: str  # where a new checkpoint starts reading: earliest | latest
    fail_on_data_loss: bool  # stop (true) or warn (false) when Kafka deleted offsets the stream had not read
    delta_snapshot_partitions: int  # shuffle partitions Delta uses to rebuild a snapshot after a commit
    # Tasks (so files per event-hour directory) of each micro-batch's lake appends; Spark reads one
    # partition per Kafka partition, and every file costs each later scan of the hour (~1 ms of CPU).
    lake_write_tasks: int = 1


@dataclass(frozen=True)
class AirflowSettings:
    enabled: bool  # `stack up` manages an embedded `airflow standalone`
    port: int  # UI / REST API on 127.0.0.1
    worker_log_port: int  # log servers bind 0.0.0.0; only their ports can move
    trigger_log_port: int
    batch_start: str  # hourly_recompute's start_date (catchup backfills from here)
    # "standalone": `airflow standalone` on SQLite (LocalExecutor). "celery": Postgres + the CeleryExecutor,
    # each component a process of its own (tidemark/stack/airflow_celery.py); the default under
    # TIDEMARK_STACK=cluster. See docs/production.md.
    mode: str = "standalone"
    postgres_port: int = 15432  # the embedded Postgres (celery mode) on 127.0.0.1
    # SQLAlchemy URL of Airflow's metadata database in celery mode; set explicitly, Postgres is external
    # (`stack up` starts no server, only checks it). Empty: the embedded one.
    database_url: str = ""
    celery_concurrency: int = 2  # task slots of the Celery worker (each task may start a Spark driver)
    celery_broker_db: int = 1  # Redis database of the Celery broker (the serving cache lives in its own)

    @property
    def celery(self) -> bool:
        return self.mode == "celery"

    @property
    def postgres_external(self) -> bool:
        return bool(self.database_url)

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{self.postgres_port}/airflow"


@dataclass(frozen=True)
class ServingSettings:
    """The dashboard query API (`tidemark serve`, tidemark/serving/)."""

    host: str
    port: int
    # A second readonly ClickHouse user for the dashboard query class, with a tighter wall-clock
    # limit than the reader's (CLICKHOUSE_READER_MAX_EXECUTION_S, used for CSV exports). Limits live
    # in the users' profiles: 18.16 ignores per-query settings sent by a readonly user.
    dashboard_user: str
    dashboard_password: str
    dashboard_max_execution_s: int
    max_inflight_queries: int  # ClickHouse queries in flight at once; beyond, requests wait...
    queue_wait_s: float  # ...this long for a slot, then get 503
    rate_per_s: float  # per-tenant token bucket (a key may carry its own)
    burst: int
    client_rate_per_s: float  # per-client-address token bucket, taken before any key is looked at
    client_burst: int
    forwarded_allow_ips: str  # proxies whose X-Forwarded-For names the client ("" = the socket peer is the client)
    live_ttl_s: float  # cache TTL of ranges that touch the live minute
    recent_ttl_s: float  # ... of ranges ending in hours the batch layer has not published yet
    closed_ttl_s: float  # ... of ranges of published hours only (their versions are in the key)
    ttl_jitter: float  # +- fraction of every TTL, so keys written together do not expire together
    stale_grace_s: float  # an expired entry is served stale this long while one request recomputes
    single_flight_wait_s: float  # a request waiting for another's recompute gives up (503) after this
    registry_refresh_s: float  # how often the published-hours fingerprint behind cache keys is re-read
    key_refresh_s: float  # keys are re-read in the background this often: a new or revoked key takes effect within it
    key_max_stale_s: float  # if refreshes keep failing this long, keys are refused (503) rather than trusted stale
    workers: int  # API processes `tidemark serve` starts (each with its own event loop and query slots)

    @property
    def registry_max_stale_s(self) -> float:
        """An API process answers from a registry snapshot (and minute horizon) at most this old,
        else 503: max(30 s, 15 refresh intervals). The hot tier waits this long between recording
        the minute horizon and dropping minute rows (horizon_grace_s below)."""
        return max(30.0, 15 * self.registry_refresh_s)

    @property
    def horizon_grace_s(self) -> float:
        """How long after the minute horizon is recorded no API process can still read minute rows
        under the old one: a snapshot is trusted registry_max_stale_s, and a query checked against
        it may then wait queue_wait_s for a slot before ClickHouse picks the parts it reads."""
        return self.registry_max_stale_s + self.queue_wait_s + 5.0


@dataclass(frozen=True)
class TieringSettings:
    """Retention and maintenance (the ``tiering`` DAG, ``tidemark tiering run``, tidemark/tiering/)."""

    hot_days: int  # minute_rollups keeps this many days; older partitions go once warm is verified
    lake_hot_days: int  # events_raw keeps this many days; older days move to the cold table
    cold_root: str  # where the cold Delta table lives (cheaper storage in production)
    cold_table: str  # its directory name under cold_root
    cold_zorder: bool  # OPTIMIZE ... ZORDER BY (tenant_id) each cold day after the move
    vacuum_retention_hours: int  # VACUUM keeps time travel this long (Delta refuses less than 168 h)
    small_file_bytes: int  # a Delta data file below this size counts as small in the report
    parts_alert: int  # active parts in one ClickHouse partition above this -> alert
    stream_rows_grace_s: int  # streaming rows of an hour are deleted this long after it was first published
    day_users_tolerance: float  # day_rollups (uniqCombined(15)) vs minute states (17): allowed relative gap
    # Between recording the minute horizon and dropping minute rows, the hot step waits this long, so
    # every API process has read the new horizon or refuses to answer (ServingSettings.horizon_grace_s)
    horizon_grace_s: float

    @property
    def cold_path(self) -> str:
        return f"{self.cold_root.rstrip('/')}/{self.cold_table}"


@dataclass(frozen=True)
class Settings:
    home: Path
    log_level: str
    log_format: str
    kafka: KafkaSettings
    clickhouse: ClickHouseSettings
    redis: RedisSettings
    lake: LakeSettings
    spark: SparkSettings
    airflow: AirflowSettings
    serving: ServingSettings
    tiering: TieringSettings
    object_store: ObjectStoreSettings
    stack: StackSettings = field(default_factory=lambda: StackSettings("embedded", 19170, 2, 1, "1g"))
    retention_days: int = field(default=30)
    max_future_skew_s: int = field(default=300)
    max_payload_bytes: int = field(default=65536)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    # A Kafka timestamp older than this at ingest is a broken producer clock (implausible_kafka_time).
    max_record_age_days: int = field(default=365)

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"


def load() -> Settings:
    """Build settings from the current environment (uncached; see `settings()`)."""
    home = Path(_env("TIDEMARK_HOME", str(PROJECT_ROOT / ".tidemark"))).resolve()

    kafka_port = _int("TIDEMARK_KAFKA_PORT", 19092)
    stack = _stack(kafka_port)
    nodes = 3 if stack.cluster else 1
    kafka = KafkaSettings(
        bootstrap_servers=_env(
            "KAFKA_BOOTSTRAP_SERVERS", ",".join(f"127.0.0.1:{kafka_port + 10 * i}" for i in range(nodes))
        ),
        external=_is_set("KAFKA_BOOTSTRAP_SERVERS"),
        port=kafka_port,
        topic=_env("TIDEMARK_TOPIC", "page_views"),
        partitions=_int("TIDEMARK_TOPIC_PARTITIONS", 4),
        dead_letter_topic=_env("TIDEMARK_DEAD_LETTER_TOPIC", "page_views_dead_letter"),
        controller_port=_int("TIDEMARK_KAFKA_CONTROLLER_PORT", 19093),
        heap=_env("TIDEMARK_KAFKA_HEAP", "512m"),
        jars_dir=_env("TIDEMARK_KAFKA_JARS_DIR", str(PROJECT_ROOT / "jvm" / "lib" / "kafka")),
        client_options=_pairs("TIDEMARK_KAFKA_CLIENT_OPTIONS"),
        replication_factor=_int("TIDEMARK_TOPIC_REPLICATION", 3 if stack.cluster else -1),
        min_insync_replicas=_int("TIDEMARK_TOPIC_MIN_INSYNC", 2) if stack.cluster else None,
        nodes=nodes,
    )

    ch_external = _is_set("CLICKHOUSE_HOST")
    clickhouse = ClickHouseSettings(
        host=_env("CLICKHOUSE_HOST", "127.0.0.1"),
        port=_int("CLICKHOUSE_PORT", 19000),
        http_port=_int("CLICKHOUSE_HTTP_PORT", 18123),
        interserver_port=_int("CLICKHOUSE_INTERSERVER_PORT", 19009),
        user=_env("CLICKHOUSE_USER", "default"),
        password=_env("CLICKHOUSE_PASSWORD", ""),
        database=_env("CLICKHOUSE_DATABASE", "tidemark"),
        reader_user=_env("CLICKHOUSE_READER_USER", "tidemark_reader"),
        reader_password=_env("CLICKHOUSE_READER_PASSWORD", "tidemark_reader"),
        reader_max_execution_s=_int("CLICKHOUSE_READER_MAX_EXECUTION_S", 10),
        external=ch_external,
    )

    redis_port = _int("TIDEMARK_REDIS_PORT", 16379)
    redis = RedisSettings(
        url=_env("REDIS_URL", f"redis://127.0.0.1:{redis_port}/0"),
        external=_is_set("REDIS_URL"),
        port=redis_port,
    )

    lake = LakeSettings(root=_env("TIDEMARK_LAKE_ROOT", str(home / "lake")))

    spark = SparkSettings(
        master=_env("SPARK_MASTER", stack.spark_master_url if stack.cluster else "local[2]"),
        shuffle_partitions=_int("TIDEMARK_SPARK_SHUFFLE_PARTITIONS", 4),
        driver_memory=_env("TIDEMARK_SPARK_DRIVER_MEMORY", "2g"),
        checkpoint_root=_env("TIDEMARK_CHECKPOINT_ROOT", str(home / "checkpoints")),
        trigger_seconds=_float("TIDEMARK_TRIGGER_SECONDS", 2.0),
        max_offsets_per_trigger=_int("TIDEMARK_MAX_OFFSETS_PER_TRIGGER", 200_000),
        # Measured in ingest time, so it must cover a re-send's distance in the topic at the speed the
        # stream reads it, restarts and catch-ups included (a 2-minute window let re-sends through
        # after two kill -9 restarts in tests). Spark scans the whole dedup state every micro-batch to
        # evict it (rate x window keys): a shorter window costs less CPU per batch and dedups less.
        dedup_window=_env("TIDEMARK_DEDUP_WINDOW", "10 minutes"),
        allowed_lateness_s=_int("TIDEMARK_ALLOWED_LATENESS_S", 600),
        jars_dir=_env("TIDEMARK_SPARK_JARS_DIR", str(PROJECT_ROOT / "jvm" / "lib" / "spark")),
        starting_offsets=_env("TIDEMARK_STARTING_OFFSETS", "earliest"),
        fail_on_data_loss=_env("TIDEMARK_FAIL_ON_DATA_LOSS", "true").lower() == "true",
        delta_snapshot_partitions=_int("TIDEMARK_DELTA_SNAPSHOT_PARTITIONS", 1),
        lake_write_tasks=max(1, _int("TIDEMARK_LAKE_WRITE_TASKS", 1)),
    )

    retention_days = _int("TIDEMARK_RETENTION_DAYS", 30)
    serving = _serving(clickhouse)
    tiering = _tiering(lake, retention_days, serving.horizon_grace_s)
    return Settings(
        home=home,
        log_level=_env("TIDEMARK_LOG_LEVEL", "WARNING"),
        log_format=_env("TIDEMARK_LOG_FORMAT", "json"),
        kafka=kafka,
        clickhouse=clickhouse,
        redis=redis,
        lake=lake,
        spark=spark,
        airflow=AirflowSettings(
            enabled=_env("TIDEMARK_AIRFLOW", "0") == "1",
            port=_int("TIDEMARK_AIRFLOW_PORT", 8080),
            worker_log_port=_int("TIDEMARK_AIRFLOW_WORKER_LOG_PORT", 8793),
            trigger_log_port=_int("TIDEMARK_AIRFLOW_TRIGGER_LOG_PORT", 8794),
            batch_start=_env("TIDEMARK_BATCH_START", "2026-11-01T00:00:00+00:00"),
            mode=_airflow_mode(),
            postgres_port=_int("TIDEMARK_POSTGRES_PORT", 15432),
            database_url=_env("TIDEMARK_AIRFLOW_DATABASE_URL", ""),
            celery_concurrency=_int("TIDEMARK_AIRFLOW_CELERY_CONCURRENCY", 2),
            celery_broker_db=_int("TIDEMARK_AIRFLOW_CELERY_REDIS_DB", 1),
        ),
        serving=serving,
        tiering=tiering,
        object_store=_object_store((lake.root, spark.checkpoint_root, tiering.cold_root)),
        stack=stack,
        retention_days=retention_days,
        max_future_skew_s=_int("TIDEMARK_MAX_FUTURE_SKEW_S", 300),
        max_payload_bytes=_int("TIDEMARK_MAX_PAYLOAD_BYTES", 65536),
        cluster=ClusterSettings(
            name=_env("CLICKHOUSE_CLUSTER", "tidemark"),
            read_database=_env("CLICKHOUSE_READ_DATABASE", f"{clickhouse.database}_all"),
            storage_policy=_env("CLICKHOUSE_STORAGE_POLICY", "tidemark_tiered"),
            cold_volume=_env("CLICKHOUSE_COLD_VOLUME", "cold"),
            tenant_role=_env("CLICKHOUSE_TENANT_ROLE", "tidemark_tenant_reader"),
            tenant_setting=_env("CLICKHOUSE_TENANT_SETTING", "SQL_tidemark_tenant"),
        ),
        max_record_age_days=_max_record_age_days(),
    )


def _object_store(roots: tuple[str, ...]) -> ObjectStoreSettings:
    s3_roots = tuple(dict.fromkeys(r for r in roots if r.startswith("s3a://")))
    port = _int("TIDEMARK_S3_PORT", 19070)
    external = _is_set("TIDEMARK_S3_ENDPOINT")
    # The embedded store's fixed keys; an external one without keys uses the AWS default chain.
    key, secret = ("", "") if external else ("tidemark", "tidemark-secret")
    return ObjectStoreSettings(
        roots=s3_roots,
        endpoint=_env("TIDEMARK_S3_ENDPOINT", f"http://127.0.0.1:{port}"),
        external=external,
        port=port,
        access_key=_env("TIDEMARK_S3_ACCESS_KEY", key),
        secret_key=_env("TIDEMARK_S3_SECRET_KEY", secret),
        region=_env("TIDEMARK_S3_REGION", "us-east-1"),
        path_style=_env("TIDEMARK_S3_PATH_STYLE", "true").lower() == "true",
        heap=_env("TIDEMARK_S3PROXY_HEAP", "256m"),
        log_store=_env("TIDEMARK_S3_LOG_STORE", "io.delta.storage.S3SingleDriverLogStore"),
        jars_dir=_env("TIDEMARK_S3PROXY_JARS_DIR", str(PROJECT_ROOT / "jvm" / "lib" / "s3proxy")),
        s3a_jars_dir=_env("TIDEMARK_S3A_JARS_DIR", str(PROJECT_ROOT / "jvm" / "lib" / "s3a")),
    )


def _stack(kafka_port: int) -> StackSettings:
    profile = _env("TIDEMARK_STACK", "embedded")
    if profile not in ("embedded", "cluster"):
        raise ValueError(f"TIDEMARK_STACK={profile!r} must be 'embedded' or 'cluster'")
    return StackSettings(
        profile=profile,
        spark_port_base=_int("TIDEMARK_SPARK_PORT_BASE", kafka_port + 78),
        spark_workers=_int("TIDEMARK_SPARK_WORKERS", 2),
        spark_worker_cores=_int("TIDEMARK_SPARK_WORKER_CORES", 1),
        spark_worker_memory=_env("TIDEMARK_SPARK_WORKER_MEMORY", "1g"),
    )


def _max_record_age_days() -> int:
    days = _int("TIDEMARK_MAX_RECORD_AGE_DAYS", 365)
    if days < 1:
        raise ValueError(f"TIDEMARK_MAX_RECORD_AGE_DAYS={days} must be at least 1")
    return days


def _serving(clickhouse: ClickHouseSettings) -> ServingSettings:
    limit = _int("TIDEMARK_SERVING_DASHBOARD_MAX_EXECUTION_S", 5)
    if not 1 <= limit <= 30 or not 1 <= clickhouse.reader_max_execution_s <= 30:
        raise ValueError(
            "query time limits must be 1-30 s (TIDEMARK_SERVING_DASHBOARD_MAX_EXECUTION_S, "
            "CLICKHOUSE_READER_MAX_EXECUTION_S)"
        )
    refresh, stale = _float("TIDEMARK_SERVING_KEY_REFRESH_S", 5.0), _float("TIDEMARK_SERVING_KEY_MAX_STALE_S", 60.0)
    if not 0 < refresh <= stale:
        raise ValueError("need 0 < TIDEMARK_SERVING_KEY_REFRESH_S <= TIDEMARK_SERVING_KEY_MAX_STALE_S")
    return ServingSettings(
        host=_env("TIDEMARK_SERVING_HOST", "127.0.0.1"),
        port=_int("TIDEMARK_SERVING_PORT", 8088),
        dashboard_user=_env("CLICKHOUSE_DASHBOARD_USER", "tidemark_dashboard"),
        dashboard_password=_env("CLICKHOUSE_DASHBOARD_PASSWORD", "tidemark_dashboard"),
        dashboard_max_execution_s=limit,
        max_inflight_queries=_int("TIDEMARK_SERVING_MAX_INFLIGHT", 8),
        queue_wait_s=_float("TIDEMARK_SERVING_QUEUE_WAIT_S", 2.0),
        rate_per_s=_float("TIDEMARK_SERVING_RATE_PER_S", 50.0),
        burst=_int("TIDEMARK_SERVING_BURST", 200),
        client_rate_per_s=_float("TIDEMARK_SERVING_CLIENT_RATE_PER_S", 100.0),
        client_burst=_int("TIDEMARK_SERVING_CLIENT_BURST", 400),
        forwarded_allow_ips=_env("TIDEMARK_SERVING_FORWARDED_ALLOW_IPS", ""),
        live_ttl_s=_float("TIDEMARK_SERVING_LIVE_TTL_S", 5.0),
        recent_ttl_s=_float("TIDEMARK_SERVING_RECENT_TTL_S", 60.0),
        closed_ttl_s=_float("TIDEMARK_SERVING_CLOSED_TTL_S", 3600.0),
        ttl_jitter=_float("TIDEMARK_SERVING_TTL_JITTER", 0.15),
        stale_grace_s=_float("TIDEMARK_SERVING_STALE_GRACE_S", 300.0),
        single_flight_wait_s=_float("TIDEMARK_SERVING_SINGLE_FLIGHT_WAIT_S", limit + 3.0),
        registry_refresh_s=_float("TIDEMARK_SERVING_REGISTRY_REFRESH_S", 2.0),
        key_refresh_s=refresh,
        key_max_stale_s=stale,
        workers=_workers(),
    )


def _workers() -> int:
    """TIDEMARK_SERVING_WORKERS, default one per core up to 4 (an API process is one event loop:
    JSON and HTTP work beyond one core needs more processes)."""
    workers = _int("TIDEMARK_SERVING_WORKERS", min(4, os.cpu_count() or 1))
    if not 1 <= workers <= 64:
        raise ValueError(f"TIDEMARK_SERVING_WORKERS={workers} must be 1-64")
    return workers


def _tiering(lake: LakeSettings, retention_days: int, api_horizon_grace_s: float) -> TieringSettings:
    tiering = TieringSettings(
        hot_days=_int("TIDEMARK_HOT_DAYS", 7),
        # The contract accepts events up to retention_days old (older ones are dead letters), so a
        # day older than that never receives data again: only such days may leave the hot lake, and
        # every hour the late-data DAG may recompute is still in it.
        lake_hot_days=_int("TIDEMARK_LAKE_HOT_DAYS", max(35, retention_days + 1)),
        cold_root=_env("TIDEMARK_COLD_ROOT", lake.root),
        cold_table=_env("TIDEMARK_COLD_TABLE", "events_cold"),
        cold_zorder=_env("TIDEMARK_COLD_ZORDER", "true").lower() == "true",
        vacuum_retention_hours=_int("TIDEMARK_VACUUM_RETENTION_HOURS", 168),
        small_file_bytes=_int("TIDEMARK_SMALL_FILE_BYTES", 32 * 1024 * 1024),
        parts_alert=_int("TIDEMARK_PARTS_ALERT", 100),
        stream_rows_grace_s=_int("TIDEMARK_STREAM_ROWS_GRACE_S", 3600),
        day_users_tolerance=_float("TIDEMARK_DAY_USERS_TOLERANCE", 0.02),
        horizon_grace_s=_float("TIDEMARK_HOT_HORIZON_GRACE_S", api_horizon_grace_s),
    )
    check_tiering(tiering, retention_days)
    return tiering


def check_tiering(tiering: TieringSettings, retention_days: int) -> None:
    """Refuse settings that would lose data or time travel (raised at load, naming the variable)."""
    if tiering.hot_days < 1:
        raise ValueError("TIDEMARK_HOT_DAYS must be at least 1")
    if tiering.horizon_grace_s < 0:
        raise ValueError("TIDEMARK_HOT_HORIZON_GRACE_S must be 0 or more (seconds)")
    if tiering.lake_hot_days <= retention_days:
        raise ValueError(
            f"TIDEMARK_LAKE_HOT_DAYS={tiering.lake_hot_days} must exceed TIDEMARK_RETENTION_DAYS="
            f"{retention_days}: the stream still lands (and the late-data DAG recomputes) events "
            f"that old, and cold hours are not recomputed"
        )
    if tiering.vacuum_retention_hours < 168:
        raise ValueError(
            "TIDEMARK_VACUUM_RETENTION_HOURS must be at least 168 (7 days): time travel and "
            "readers of older snapshots need the files that long"
        )
    if not 1 <= tiering.parts_alert < 300:
        raise ValueError("TIDEMARK_PARTS_ALERT must be 1-299 (ClickHouse refuses inserts at 300 parts per partition)")
    if tiering.stream_rows_grace_s < 600:
        raise ValueError(
            "TIDEMARK_STREAM_ROWS_GRACE_S must be at least 600 (readers that resolved the registry "
            "before a publish still read streaming rows)"
        )


def _airflow_mode() -> str:
    """TIDEMARK_AIRFLOW_MODE, else "celery" under the cluster profile (TIDEMARK_STACK=cluster)."""
    mode = _env("TIDEMARK_AIRFLOW_MODE", "celery" if _env("TIDEMARK_STACK", "") == "cluster" else "standalone")
    if mode not in ("standalone", "celery"):
        raise ValueError(f"environment variable TIDEMARK_AIRFLOW_MODE={mode!r} is not 'standalone' or 'celery'")
    return mode


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Process-wide settings, read once."""
    return load()
