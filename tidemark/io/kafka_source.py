"""``tidemark_kafka``: a Spark 4 Python streaming data source over kafka-python.

The JVM ``kafka`` format is not installable here, so this reimplements the
parts of Spark's Kafka micro-batch source that Tidemark needs::

    spark.readStream.format("tidemark_kafka")
        .option("bootstrap.servers", "127.0.0.1:19092")   # default: settings().kafka
        .option("subscribe", "page_views")                 # one topic; default: settings().kafka.topic
        .option("startingOffsets", "earliest")             # | "latest" | '{"0": 12, "1": -2}'
        .option("maxOffsetsPerTrigger", "200000")          # default: no limit
        .option("failOnDataLoss", "true")
        .load()

The schema matches Spark's Kafka source (key, value, topic, partition, offset,
timestamp, timestampType). Executors read with a fresh, group-less
KafkaConsumer per Kafka partition range and emit Arrow record batches.

Offsets (what Spark checkpoints) are ``{"topic": T, "offsets": {"0": next, ...}}``;
a micro-batch reads ``[start, end)`` per partition. An end offset may carry
``"resetFrom": {"0": n}``: that batch reads partition 0 from ``n`` instead of
the previous end. This keeps replays deterministic (a replayed batch reads the
same range) for two cases:

* ``failOnDataLoss=false`` continuing from the earliest available offset;
* the first batch. ``initialOffset()`` is *symbolic* (``"offsets": {}`` plus the
  ``startingOffsets`` spec) and the first ``latestOffset()`` resolves it into
  ``resetFrom``. Spark calls ``initialOffset()`` again after a restart that
  precedes the first commit, so a resolved "latest" there would drift; instead
  batch 0 always runs (possibly empty) and its resolved offsets are checkpointed.

End offsets come from the **fetch high-watermark**, not ListOffsets: tansu's
ListOffsets(latest) under-reports the end by up to one record batch, while the
high-watermark in a Fetch response is exact. The driver keeps one long-lived
consumer and sends a tiny Fetch (1 byte per partition, positioned at the last
known end) per trigger, which costs about one broker round trip.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

log = logging.getLogger(__name__)

SOURCE_NAME = "tidemark_kafka"

SCHEMA = StructType([
    StructField("key", BinaryType(), True),
    StructField("value", BinaryType(), True),
    StructField("topic", StringType(), False),
    StructField("partition", IntegerType(), False),
    StructField("offset", LongType(), False),
    StructField("timestamp", TimestampType(), False),
    StructField("timestampType", IntegerType(), True),
])

EARLIEST = -2  # Spark's JSON sentinel for "earliest" in startingOffsets
LATEST = -1    # ... and for "latest"

# Executor-side consumer tuning. One fetch can carry a whole partition's
# backlog (lz4 batches are ~1 MB), so big fetches + big polls amortise the
# per-request cost; batches of <= max_poll_records rows go to Arrow at once.
READ_CONSUMER_DEFAULTS: dict[str, Any] = {
    "max_partition_fetch_bytes": 16 << 20,
    "fetch_max_bytes": 64 << 20,
    "receive_message_max_bytes": 100 << 20,
    "max_poll_records": 20_000,
    "fetch_max_wait_ms": 100,
    "fetch_min_bytes": 1,
}
# Driver-side consumer: only metadata and tiny watermark fetches.
DRIVER_CONSUMER_DEFAULTS: dict[str, Any] = {
    "metadata_max_age_ms": 30_000,
}
# Never overridable: no group, no commits, no auto-created topics, no silent resets.
_FIXED_CONSUMER_CONF: dict[str, Any] = {
    "group_id": None,
    "enable_auto_commit": False,
    "allow_auto_create_topics": False,
    "auto_offset_reset": "none",
}

# Watermark fetch: tansu answers a Fetch with max_wait_ms=0 with *no partitions
# at all*, so wait a little; it holds the request for max_wait when there is no
# new data even with min_bytes=0, which bounds the cost.
_WATERMARK_MAX_WAIT_MS = 5
_WATERMARK_ATTEMPTS = 6


class KafkaDataLossError(RuntimeError):
    """Requested offsets are no longer (or not yet) in the log and failOnDataLoss=true."""


# --------------------------------------------------------------------------- #
# Pure offset logic (unit-tested without a broker)
# --------------------------------------------------------------------------- #

def encode_offsets(topic: str, offsets: Mapping[int, int],
                   reset_from: Mapping[int, int] | None = None) -> dict:
    """Spark checkpoint form: string partition keys in ascending order (stable JSON)."""
    out: dict[str, Any] = {
        "topic": topic,
        "offsets": {str(p): int(offsets[p]) for p in sorted(offsets)},
    }
    if reset_from:
        out["resetFrom"] = {str(p): int(reset_from[p]) for p in sorted(reset_from)}
    return out


def encode_initial(topic: str, spec: str | Mapping[int, int]) -> dict:
    """The symbolic start of the first batch: no offsets yet, just the startingOffsets spec."""
    if not isinstance(spec, str):
        spec = {str(p): int(spec[p]) for p in sorted(spec)}
    return {"topic": topic, "offsets": {}, "startingOffsets": spec}


def initial_spec(data: Mapping) -> str | dict[int, int] | None:
    """The startingOffsets spec of a symbolic start offset, else None."""
    spec = data.get("startingOffsets")
    if spec is None or isinstance(spec, str):
        return spec
    return {int(p): int(o) for p, o in spec.items()}


def decode_offsets(data: Mapping | str, topic: str | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """(offsets, resetFrom) from the checkpoint form (dict or JSON); checks the topic."""
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, Mapping) or "offsets" not in data:
        raise ValueError(f"not a {SOURCE_NAME} offset: {data!r}")
    if topic is not None and data.get("topic") != topic:
        raise ValueError(
            f"the checkpoint holds offsets of topic {data.get('topic')!r}, but the query subscribes "
            f"to {topic!r}: use a new checkpoint location when changing the topic")
    offsets = {int(p): int(o) for p, o in data["offsets"].items()}
    resets = {int(p): int(o) for p, o in (data.get("resetFrom") or {}).items()}
    return offsets, resets


def parse_starting_offsets(spec: str | None, topic: str) -> str | dict[int, int]:
    """'earliest' | 'latest' | {partition: offset-or-sentinel}.

    JSON may be flat (``{"0": 12}``) or Spark's nested form (``{"topic": {"0": 12}}``);
    -2 means earliest and -1 latest for that partition, as in Spark.
    """
    text = (spec or "latest").strip()
    if text.lower() in ("earliest", "latest"):
        return text.lower()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(
            f"startingOffsets must be 'earliest', 'latest' or JSON like '{{\"0\": 12}}', got {text!r}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"startingOffsets JSON must be an object, got {text!r}")
    if topic in data and isinstance(data[topic], dict):
        data = data[topic]
    elif any(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"startingOffsets names topics {sorted(data)} but the query subscribes to {topic!r}")
    out: dict[int, int] = {}
    for p, o in data.items():
        try:
            part, off = int(p), int(o)
        except (TypeError, ValueError):
            raise ValueError(f"startingOffsets: bad entry {p!r}: {o!r}") from None
        if part < 0 or off < EARLIEST:
            raise ValueError(f"startingOffsets: bad entry {p!r}: {o!r}")
        out[part] = off
    return out


def resolve_starting_offsets(spec: str | dict[int, int], partitions: Mapping[int, tuple[int, int]]) -> dict[int, int]:
    """Concrete start offsets from a parsed spec and ``{partition: (earliest, latest)}``.

    Partitions missing from a JSON spec start at earliest (like newly
    discovered ones); JSON offsets are kept verbatim, so an impossible one is
    reported by the data-loss check of the first batch. Naming a partition the
    topic does not have is an error.
    """
    if spec == "earliest":
        return {p: lo for p, (lo, _) in partitions.items()}
    if spec == "latest":
        return {p: hi for p, (_, hi) in partitions.items()}
    out = {}
    for p, (lo, hi) in partitions.items():
        off = spec.get(p, EARLIEST)
        out[p] = lo if off == EARLIEST else hi if off == LATEST else off
    unknown = sorted(set(spec) - set(partitions))
    if unknown:
        raise ValueError(f"startingOffsets names partitions {unknown} that the topic does not have "
                         f"(it has {sorted(partitions)})")
    return out


@dataclass(frozen=True)
class DataLossEvent:
    topic: str
    partition: int
    requested: int
    earliest: int
    latest: int

    @property
    def kind(self) -> str:
        return "beyond_end" if self.requested > self.latest else "deleted"

    @property
    def lost(self) -> int:
        """Offsets skipped for sure (0 when the log was reset: unknown)."""
        return max(0, self.earliest - self.requested) if self.kind == "deleted" else 0

    def describe(self) -> str:
        head = (f"Kafka topic {self.topic!r} partition {self.partition}: requested offset {self.requested} ")
        if self.kind == "deleted":
            return head + (f"is below the earliest available offset {self.earliest} "
                           f"(latest {self.latest}); offsets [{self.requested}, {self.earliest}) were "
                           f"deleted (retention) before they were read: {self.lost} offsets lost")
        return head + (f"is beyond the end of the log (earliest {self.earliest}, latest {self.latest}); "
                       "the topic was recreated or the broker lost data")


def data_loss_message(events: list[DataLossEvent], where: str) -> str:
    lines = [e.describe() for e in events]
    return (f"{SOURCE_NAME}: data loss detected {where}: " + "; ".join(lines) + ". "
            "Some data may have been lost. If this is expected (e.g. the broker's storage was "
            "reset or retention deleted unread data), set the source option failOnDataLoss=false to "
            "log a warning and continue from the earliest available offset.")


def check_data_loss(topic: str, start: Mapping[int, int],
                    watermarks: Mapping[int, tuple[int, int]]) -> list[DataLossEvent]:
    """Partitions whose start offset is not in ``[earliest, latest]``."""
    events = []
    for p, off in sorted(start.items()):
        if p not in watermarks:
            continue
        lo, hi = watermarks[p]
        if off < lo or off > hi:
            events.append(DataLossEvent(topic, p, off, lo, hi))
    return events


def apportion(start: Mapping[int, int], end: Mapping[int, int], max_rows: int) -> dict[int, int]:
    """Cap ``end`` so at most ``max_rows`` offsets are read in total.

    Like Spark's Kafka source, the budget is split across partitions in
    proportion to their backlog; unlike its floor/ceil rounding, the largest
    remainder method keeps the sum exactly ``min(max_rows, backlog)`` while
    every partition with a backlog still gets rows once the budget allows.
    """
    if max_rows < 0:
        raise ValueError("max_rows must be >= 0")
    sizes = {p: max(0, end[p] - start.get(p, 0)) for p in end}
    total = sum(sizes.values())
    if total <= max_rows:
        return dict(end)
    shares = {p: max_rows * s / total for p, s in sizes.items()}
    take = {p: min(sizes[p], math.floor(v)) for p, v in shares.items()}
    left = max_rows - sum(take.values())
    for p in sorted(sizes, key=lambda q: (-(shares[q] - math.floor(shares[q])), -sizes[q], q)):
        if left <= 0:
            break
        if take[p] < sizes[p]:
            take[p] += 1
            left -= 1
    return {p: (start.get(p, 0) + take[p]) if sizes[p] > 0 else end[p] for p in end}


def split_range(start: int, end: int, max_records: int | None) -> list[tuple[int, int]]:
    """``[start, end)`` cut into near-equal pieces of at most ``max_records`` offsets."""
    if end <= start:
        return []
    if not max_records or end - start <= max_records:
        return [(start, end)]
    pieces = math.ceil((end - start) / max_records)
    bounds = [start + (end - start) * i // pieces for i in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# --------------------------------------------------------------------------- #
# Broker access
# --------------------------------------------------------------------------- #

def _bool_option(options: Mapping[str, str], name: str, default: bool) -> bool:
    raw = options.get(name)
    if raw is None:
        return default
    value = str(raw).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"option {name} must be true or false, got {raw!r}")
    return value == "true"


def _int_option(options: Mapping[str, str], name: str) -> int | None:
    raw = options.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"option {name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"option {name} must be > 0, got {raw!r}")
    return value


def _consumer_overrides(options: Mapping[str, str]) -> dict[str, Any]:
    """``kafka.<config.name>`` options as kafka-python keyword arguments (values coerced)."""
    out: dict[str, Any] = {}
    for key, raw in options.items():
        lk = key.lower()
        if not lk.startswith("kafka.") or lk == "kafka.bootstrap.servers":
            continue
        name = lk[len("kafka."):].replace(".", "_")
        if name in _FIXED_CONSUMER_CONF:
            raise ValueError(f"option {key} cannot be set: the source manages it")
        value: Any = raw
        text = str(raw).strip()
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            try:
                value = int(text)
            except ValueError:
                pass
        out[name] = value
    return out


def _new_consumer(bootstrap: str, conf: Mapping[str, Any], defaults: Mapping[str, Any]):
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, **{**defaults, **conf, **_FIXED_CONSUMER_CONF})


class _Watermarks:
    """Driver-side broker view of one topic over a long-lived consumer.

    ``get()`` returns ``{partition: (earliest, end)}`` where ``end`` is the
    fetch high-watermark (or the last stable offset under read_committed).
    """

    def __init__(self, bootstrap: str, topic: str, conf: Mapping[str, Any], *,
                 discovery_interval_s: float = 5.0, client_id: str = "tidemark-kafka-source"):
        self.bootstrap = bootstrap
        self.topic = topic
        self.conf = {"client_id": client_id, **conf}
        self.discovery_interval_s = discovery_interval_s
        self.read_committed = str(conf.get("isolation_level", "read_uncommitted")) == "read_committed"
        self._consumer = None
        self._partitions: set[int] = set()
        self._discovered_at = 0.0
        self._hint: dict[int, int] = {}  # last known end per partition: next fetch position
        self._raw = True  # False once the raw fetch path proved unavailable

    @property
    def consumer(self):
        if self._consumer is None:
            self._consumer = _new_consumer(self.bootstrap, self.conf, DRIVER_CONSUMER_DEFAULTS)
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            finally:
                self._consumer = None

    def partitions(self, *, refresh: bool = False) -> set[int]:
        now = time.monotonic()
        if refresh or not self._partitions or now - self._discovered_at >= self.discovery_interval_s:
            consumer = self.consumer
            if self._partitions:
                consumer.topics()  # forces a metadata refresh: discovers new partitions
            parts = set(consumer.partitions_for_topic(self.topic) or ())
            if not parts:
                raise RuntimeError(
                    f"{SOURCE_NAME}: topic {self.topic!r} does not exist on {self.bootstrap} "
                    "(topics are never auto-created; create it first)")
            new = parts - self._partitions
            if self._partitions and new:
                log.info("topic %s: discovered new partitions %s", self.topic, sorted(new))
            self._partitions = parts
            self._discovered_at = now
        return set(self._partitions)

    def get(self, partitions: set[int] | None = None) -> dict[int, tuple[int, int]]:
        parts = self.partitions() if partitions is None else set(partitions)
        result = None
        if self._raw:
            try:
                result = self._fetch_raw(parts)
            except (AttributeError, ImportError, TypeError) as exc:  # kafka-python internals moved
                log.warning("raw watermark fetch unavailable (%r); falling back to consumer.poll()", exc)
                self._raw = False
        if result is None:
            result = self._fetch_polling(parts)
        for p, (_, hi) in result.items():
            self._hint[p] = hi
        return result

    # -- fetch paths ------------------------------------------------------- #

    def _fetch_raw(self, parts: set[int]) -> dict[int, tuple[int, int]]:
        """One 1-byte-per-partition Fetch per leader at the last known end.

        Uses kafka-python 3's connection manager directly (pinned version):
        the consumer's own fetcher updates high-watermarks only lazily, as
        records are drained, so it cannot tell when a value is fresh.
        """
        from kafka import TopicPartition
        from kafka.protocol.consumer.fetch import FetchRequest

        consumer = self.consumer
        manager = consumer._manager
        cluster = consumer._client.cluster
        result: dict[int, tuple[int, int]] = {}
        todo = set(parts)
        # Position each fetch at the last known end: nothing (or one new batch) comes back.
        if any(p not in self._hint for p in todo):
            fresh = consumer.end_offsets([TopicPartition(self.topic, p) for p in todo if p not in self._hint])
            for tp, off in fresh.items():
                self._hint[tp.partition] = off  # ListOffsets: <= the true end, fine as a position
        wait_ms = _WATERMARK_MAX_WAIT_MS
        last_error = None
        for attempt in range(_WATERMARK_ATTEMPTS):
            by_leader: dict[int, list[int]] = {}
            for p in sorted(todo):
                leader = cluster.leader_for_partition(TopicPartition(self.topic, p))
                if leader is None or leader < 0:
                    last_error = f"no leader for partition {p}"
                    continue
                by_leader.setdefault(leader, []).append(p)
            if not by_leader:
                cluster.request_update()
                time.sleep(0.1 * (attempt + 1))
                continue
            for node, plist in by_leader.items():
                request = FetchRequest(
                    max_wait_ms=wait_ms, min_bytes=0, max_bytes=1,
                    isolation_level=1 if self.read_committed else 0,
                    session_id=0, session_epoch=-1,  # no fetch session
                    topics=[FetchRequest.FetchTopic(topic=self.topic, partitions=[
                        FetchRequest.FetchTopic.FetchPartition(
                            partition=p, fetch_offset=max(0, self._hint.get(p, 0)),
                            current_leader_epoch=-1, last_fetched_epoch=-1,
                            log_start_offset=-1, partition_max_bytes=1)
                        for p in plist])],
                    min_version=4 if self.read_committed else 0, max_version=12,
                )

                async def _send(req=request, node_id=node):
                    return await manager.wait_for(manager.send(req, node_id=node_id), 10_000)

                response = manager.run(_send)
                for topic_data in response.responses:
                    if topic_data.topic != self.topic:
                        continue
                    for pd in topic_data.partitions:
                        p = pd.partition_index
                        if p not in todo:
                            continue
                        if pd.error_code == 1:  # OFFSET_OUT_OF_RANGE: our hint is outside the log
                            self._hint[p] = self._earliest(p)
                            last_error = f"partition {p}: offset out of range"
                            continue
                        if pd.error_code:
                            last_error = f"partition {p}: error code {pd.error_code}"
                            cluster.request_update()
                            continue
                        hi = pd.last_stable_offset if self.read_committed else pd.high_watermark
                        if hi is None or hi < 0:
                            last_error = f"partition {p}: no high-watermark in the fetch response"
                            continue
                        lo = pd.log_start_offset
                        if lo is None or lo < 0:
                            lo = self._earliest(p)
                        result[p] = (lo, hi)
                        todo.discard(p)
            if not todo:
                return result
            wait_ms = min(wait_ms * 2, 200)  # partitions missing from a response: retry them
        raise RuntimeError(
            f"{SOURCE_NAME}: no high-watermark for topic {self.topic!r} partitions {sorted(todo)} "
            f"after {_WATERMARK_ATTEMPTS} fetches ({last_error})")

    def _earliest(self, p: int) -> int:
        from kafka import TopicPartition

        tp = TopicPartition(self.topic, p)
        return self.consumer.beginning_offsets([tp])[tp]

    def _fetch_polling(self, parts: set[int], timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
        """Fallback over public API only: a short-lived consumer polls at the last known end."""
        from kafka import TopicPartition

        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer = _new_consumer(self.bootstrap, {**self.conf, "max_partition_fetch_bytes": 1,
                                                  "fetch_max_wait_ms": 50}, {})
        try:
            consumer.assign(tps)
            begin = consumer.beginning_offsets(tps)
            ends = consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(self._hint.get(tp.partition, ends[tp]), begin[tp]))
            deadline = time.monotonic() + timeout_s
            while True:
                consumer.poll(timeout_ms=100, max_records=100_000)  # drains: updates highwater
                his = {tp: consumer.highwater(tp) for tp in tps}
                if all(h is not None for h in his.values()):
                    return {tp.partition: (begin[tp], his[tp]) for tp in tps}
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{SOURCE_NAME}: no high-watermark for {self.topic!r} within {timeout_s}s")
        finally:
            consumer.close()


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """``{partition: fetch high-watermark}`` (the exact end; tansu's end_offsets() lags)."""
    wm = _Watermarks(bootstrap, topic, {}, client_id="tidemark-watermarks")
    try:
        return {p: hi for p, (_, hi) in wm.get().items()}
    finally:
        wm.close()


def consumer_lag(bootstrap: str, topic: str, offsets: Mapping | str) -> int:
    """Records behind the end: sum over partitions of high-watermark minus the given next offset.

    ``offsets`` is ``{partition: next_offset}``, or this source's offset as found in
    the checkpoint / ``StreamingQueryProgress.sources[i].endOffset`` (dict or JSON).
    Partitions absent from it count from 0 (a new partition is read from the start).
    """
    if isinstance(offsets, str) or "offsets" in offsets:
        given, _ = decode_offsets(offsets, topic)
    else:
        given = {int(p): int(o) for p, o in offsets.items()}
    return sum(max(0, hi - given.get(p, 0)) for p, hi in high_watermarks(bootstrap, topic).items())


# --------------------------------------------------------------------------- #
# Spark data source
# --------------------------------------------------------------------------- #

@dataclass
class KafkaRange(InputPartition):
    """One Spark task: offsets ``[start, end)`` of one Kafka partition."""
    topic: str
    partition: int
    start: int
    end: int
    # The reader's settings travel with the partition (read() must be stateless).
    conf: dict = field(default_factory=dict)

    def __post_init__(self):
        InputPartition.__init__(self, (self.topic, self.partition, self.start, self.end))


class KafkaDataSource(DataSource):
    """``spark.readStream.format("tidemark_kafka")``: see the module docstring."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        return SCHEMA

    def streamReader(self, schema: StructType) -> "KafkaStreamReader":
        return KafkaStreamReader(dict(self.options))


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Driver-side planning + stateless executor-side ``read``.

    Picklable: broker clients are created lazily and never pickled.
    """

    def __init__(self, options: Mapping[str, str]):
        opts = {str(k): str(v) for k, v in options.items()}
        lower = {k.lower(): v for k, v in opts.items()}
        if "assign" in lower or "subscribepattern" in lower:
            raise ValueError(f"{SOURCE_NAME} supports only the 'subscribe' option (one topic)")
        bootstrap = lower.get("bootstrap.servers") or lower.get("kafka.bootstrap.servers")
        topic = lower.get("subscribe")
        if not bootstrap or not topic:
            from tidemark.config import settings

            cfg = settings().kafka
            bootstrap = bootstrap or cfg.bootstrap_servers
            topic = topic or cfg.topic
        topic = topic.strip()
        if "," in topic or not topic:
            raise ValueError(f"{SOURCE_NAME}: 'subscribe' must name exactly one topic, got {topic!r}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.starting = parse_starting_offsets(lower.get("startingoffsets"), topic)
        self.max_offsets_per_trigger = _int_option(lower, "maxoffsetspertrigger")
        self.max_records_per_partition = _int_option(lower, "maxrecordsperpartition")
        self.fail_on_data_loss = _bool_option(lower, "failondataloss", True)
        self.poll_timeout_ms = _int_option(lower, "kafkaconsumer.polltimeoutms") or 120_000
        discovery_ms = _int_option(lower, "partitiondiscoveryintervalms")
        self.discovery_interval_s = (discovery_ms or 5_000) / 1000
        self.consumer_conf = _consumer_overrides(opts)
        # driver-only state
        self._wm: _Watermarks | None = None
        self._target: dict[int, int] | None = None  # Trigger.AvailableNow snapshot
        self._latest: dict[int, int] = {}
        self.data_loss_offsets = 0  # offsets skipped for sure under failOnDataLoss=false
        self.last_latest_offset_s = 0.0

    # -- pickling ---------------------------------------------------------- #

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_wm"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def watermarks(self) -> _Watermarks:
        if self._wm is None:
            self._wm = _Watermarks(self.bootstrap, self.topic, self.consumer_conf,
                                   discovery_interval_s=self.discovery_interval_s)
        return self._wm

    # -- driver ------------------------------------------------------------ #

    def initialOffset(self) -> dict:
        # Symbolic: resolved by the first latestOffset() into the first end offset (see module doc).
        return encode_initial(self.topic, self.starting)

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.max_offsets_per_trigger:
            return ReadMaxRows(self.max_offsets_per_trigger)
        return ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self._target = {p: hi for p, (_, hi) in self.watermarks.get().items()}
        log.info("topic %s: Trigger.AvailableNow target %s", self.topic, self._target)

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        t0 = time.perf_counter()
        offsets, _ = decode_offsets(start, self.topic)
        wm = self.watermarks.get()
        self._latest = {p: hi for p, (_, hi) in wm.items()}

        spec = initial_spec(start)
        if spec is not None:  # first batch: resolve startingOffsets, pinned via resetFrom
            begin = resolve_starting_offsets(spec, wm)
            log.info("topic %s: starting offsets %s (startingOffsets=%s)", self.topic, begin,
                     spec if isinstance(spec, str) else "json")
        else:
            begin = dict(offsets)
            for p in wm:  # new partitions start at offset 0 (earliest)
                begin.setdefault(p, 0)
        missing = sorted(set(offsets) - set(wm))
        if missing:
            log.warning("topic %s: partitions %s are no longer in the metadata; keeping their offsets",
                        self.topic, missing)

        resets: dict[int, int] = dict(begin) if spec is not None else {}
        events = check_data_loss(self.topic, begin, wm)
        if events:
            if self.fail_on_data_loss:
                raise KafkaDataLossError(data_loss_message(events, "while planning a micro-batch"))
            for e in events:
                resets[e.partition] = e.earliest
                self.data_loss_offsets += e.lost
                log.warning("%s: %s; failOnDataLoss=false: continuing from offset %d "
                            "(lost=%d, total_lost=%d)", SOURCE_NAME, e.describe(), e.earliest,
                            e.lost, self.data_loss_offsets)
            begin.update(resets)

        end = {p: hi for p, (_, hi) in wm.items()}
        if self._target is not None:  # AvailableNow: never past the snapshot
            end = {p: min(hi, self._target.get(p, begin[p])) for p, hi in end.items()}
        end = {p: max(e, begin[p]) for p, e in end.items()}
        if isinstance(limit, ReadMaxRows):
            end = apportion(begin, end, limit.max_rows)
        elif not isinstance(limit, ReadAllAvailable):
            log.debug("read limit %r not supported; reading all available", limit)
        for p in missing:
            end[p] = offsets[p]

        self.last_latest_offset_s = time.perf_counter() - t0
        if spec is None and not resets and end == offsets:
            result = start  # unchanged JSON: Spark plans no batch
        else:
            result = encode_offsets(self.topic, end, resets)
        log.debug("latestOffset %s -> %s in %.1f ms", offsets, end, self.last_latest_offset_s * 1000)
        return result

    def reportLatestOffset(self) -> dict | None:
        return encode_offsets(self.topic, self._latest) if self._latest else None

    def partitions(self, start: dict, end: dict) -> list[KafkaRange]:
        begin, _ = decode_offsets(start, self.topic)
        until, resets = decode_offsets(end, self.topic)
        conf = {
            "bootstrap": self.bootstrap,
            "consumer": self.consumer_conf,
            "fail_on_data_loss": self.fail_on_data_loss,
            "poll_timeout_ms": self.poll_timeout_ms,
        }
        ranges: list[KafkaRange] = []
        for p in sorted(until):
            lo = resets.get(p, begin.get(p, 0))
            hi = until[p]
            if hi < lo:
                log.warning("topic %s partition %d: end %d < start %d; skipped", self.topic, p, hi, lo)
                continue
            for a, b in split_range(lo, hi, self.max_records_per_partition):
                ranges.append(KafkaRange(self.topic, p, a, b, conf))
        return ranges

    def commit(self, end: dict) -> None:
        offsets, _ = decode_offsets(end, self.topic)
        if self._latest:
            lag = sum(max(0, hi - offsets.get(p, 0)) for p, hi in self._latest.items())
            log.info("topic %s: committed %s (lag %d at last check)", self.topic, offsets, lag)

    def stop(self) -> None:
        if self._wm is not None:
            self._wm.close()
            self._wm = None

    # -- executors --------------------------------------------------------- #

    def read(self, partition: KafkaRange) -> Iterator:
        return read_range(partition)


def _arrow_schema():
    from pyspark.sql.pandas.types import to_arrow_schema

    # exactly what pyspark's records_to_arrow_batches compares against
    return to_arrow_schema(SCHEMA, timezone="UTC")


def read_range(part: KafkaRange) -> Iterator:
    """Yield Arrow record batches with exactly the records at offsets ``[start, end)``.

    Offsets may have gaps (compaction, transaction markers): reading stops once
    the consumer's position reaches ``end``, and records at ``>= end`` are dropped.
    """
    import pyarrow as pa
    from kafka import TopicPartition
    from kafka.errors import OffsetOutOfRangeError

    if part.end <= part.start:
        return
    conf = part.conf
    fail = conf.get("fail_on_data_loss", True)
    poll_timeout_s = conf.get("poll_timeout_ms", 120_000) / 1000
    schema = _arrow_schema()
    ts_type = schema.field("timestamp").type
    tp = TopicPartition(part.topic, part.partition)
    consumer = _new_consumer(conf["bootstrap"], {
        "client_id": f"tidemark-kafka-reader-{part.partition}", **conf.get("consumer", {})},
        READ_CONSUMER_DEFAULTS)
    try:
        consumer.assign([tp])
        pos = _checked_start(consumer, tp, part.start, part.end, fail)
        if pos is None:
            return
        consumer.seek(tp, pos)
        last_progress = time.monotonic()
        rows = 0
        while pos < part.end:
            try:
                polled = consumer.poll(timeout_ms=500)
            except OffsetOutOfRangeError:  # retention overtook us mid-read
                pos = _checked_start(consumer, tp, pos, part.end, fail)
                if pos is None:
                    break
                consumer.seek(tp, pos)
                continue
            records = polled.get(tp)
            if records:
                if records[-1].offset >= part.end:
                    records = [r for r in records if part.start <= r.offset < part.end]
                if records:
                    rows += len(records)
                    n = len(records)
                    yield pa.RecordBatch.from_arrays([
                        pa.array([r.key for r in records], pa.binary()),
                        pa.array([r.value for r in records], pa.binary()),
                        pa.array([part.topic] * n, pa.string()),
                        pa.array([part.partition] * n, pa.int32()),
                        pa.array([r.offset for r in records], pa.int64()),
                        pa.array([r.timestamp * 1000 for r in records], ts_type),
                        pa.array([r.timestamp_type for r in records], pa.int32()),
                    ], schema=schema)
            new_pos = consumer.position(tp)
            if new_pos > pos:
                pos = new_pos
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > poll_timeout_s:
                msg = (f"{SOURCE_NAME}: topic {part.topic!r} partition {part.partition}: no records "
                       f"at offsets [{pos}, {part.end}) within {poll_timeout_s:.0f}s "
                       "(option kafkaConsumer.pollTimeoutMs)")
                if fail:
                    raise KafkaDataLossError(msg + "; set failOnDataLoss=false to skip them")
                log.warning("%s; failOnDataLoss=false: %d offsets skipped", msg, part.end - pos)
                break
        log.debug("read %s[%d] [%d, %d): %d rows", part.topic, part.partition, part.start, part.end, rows)
    finally:
        consumer.close()


def _checked_start(consumer, tp, start: int, end: int, fail: bool) -> int | None:
    """``start``, or the earliest available offset if retention deleted ``start`` (and allowed)."""
    earliest = consumer.beginning_offsets([tp])[tp]
    if start >= earliest:
        return start
    event = DataLossEvent(tp.topic, tp.partition, start, earliest, end)
    if fail:
        raise KafkaDataLossError(data_loss_message([event], "while reading"))
    lost = min(earliest, end) - start
    log.warning("%s: %s; failOnDataLoss=false: skipped %d offsets, reading from %d",
                SOURCE_NAME, event.describe(), lost, earliest)
    return earliest if earliest < end else None
