"""Stage a minute-rollups DataFrame into ClickHouse from the executors, in parallel.

Why executors: an hour's minute rollups are many rows (1.6 M for the bench's 4.2 M-event
hour). Pulling them through the driver (``toLocalIterator`` and one clickhouse-driver client)
serialised the whole insert on one Python thread: 100 s, 46 CPU-s of driver Python. Here
every partition of the rollups opens its own client in its Python worker and sends its rows
as columnar INSERT blocks, so the work runs where the rows already are, on every core, and
only one small report per partition comes back to the driver (measured on the 4.2 M hour:
6.6 CPU-s of worker Python and 4.9 of ClickHouse for the 1.6 M rows).

Why ``mapInArrow``: the rows reach Python as Arrow batches, turned column by column (Arrow's
``to_pylist``, in C) into the lists clickhouse-driver's columnar insert sends, and the
function's output (rows, events and minute range it inserted) gives the driver an exact
total. ClickHouse 18.16 reads no Arrow or Parquet, and a JDBC write would add a jar and a
second client to configure, so clickhouse-driver's native protocol it is, through
``tidemark.io.clickhouse.client`` like every other writer.

Writes go to ``{db}.rollup_input`` (a Null table: its materialized views fill
minute_rollups and hour_rollups); columns in the order of ``ROLLUP_INPUT_COLUMNS``.

Failures and retries. Staging is NOT idempotent per partition: an INSERT that failed
midway, or a task that died after some of its INSERTs, leaves part of its rows under
``version``, and there is no per-partition marker to find them by. So:

* a retried task attempt (``attemptNumber > 0``) refuses to insert and fails the job
  instead of doubling rows a previous attempt may have written;
* a stage re-run (after a lost shuffle) restarts its tasks at attempt 0, invisible from
  Python, so after the inserts the driver checks that ClickHouse holds exactly the events
  the successful partitions reported under the version, one cheap query; any surplus is
  a ``StagingError``;
* every failure raises ``StagingError`` naming the version, the table, the server and
  the partition, and says what to do;
* the caller stages under a fresh version that no reader sees until it is published, and
  on any error throws that whole version away (``publication.remove_version``) before trying
  again under a new one. Nothing here deletes rows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from tidemark.config import ClickHouseSettings
from tidemark.errors import TidemarkError
from tidemark.tables import ROLLUP_INPUT_COLUMNS

log = logging.getLogger(__name__)

LAYERS = ("stream", "batch")  # the Enum8 of rollup_input.layer
ROLLUP_INPUT_SOURCE = ("tenant_id", "minute", "country", "device", "page", "events", "user_ids")
# Rows per INSERT: each INSERT is one block through both materialized views, i.e. one new part
# in minute_rollups and hour_rollups; larger blocks mean fewer parts to merge. 100 k rows with
# their user lists stay well under 100 MB of Python objects in a worker.
INSERT_ROWS = 100_000
DATETIME_MAX_S = 2**32 - 1  # ClickHouse DateTime: UInt32 seconds since the epoch
_MARK = "tidemark-staging:"  # tags worker-side messages so the driver can quote them


class StagingError(TidemarkError, RuntimeError):
    """Rollups could not be staged; some rows of the version may be in ClickHouse."""


@dataclass(frozen=True)
class _Target:
    """What a worker needs (picklable: settings are a frozen dataclass)."""

    cfg: ClickHouseSettings
    version: int
    layer: str

    @property
    def table(self) -> str:
        return f"{self.cfg.database}.rollup_input"

    def describe(self) -> str:
        return f"version {self.version} into {self.table} at {self.cfg.address}"


def insert_sql(table: str) -> str:
    """The INSERT statement; values always travel as parameters (inlined literals hang clickhouse-driver)."""
    return f"INSERT INTO {table} ({', '.join(ROLLUP_INPUT_COLUMNS)}) VALUES"


def arrow_columns(batch, layer: str, version: int) -> list[list]:
    """Arrow rollups (a RecordBatch or Table) -> clickhouse-driver columns in ROLLUP_INPUT_COLUMNS order.

    ``minute`` goes as epoch seconds: clickhouse-driver takes ints for DateTime as they are,
    skipping a timezone conversion per row (and no zone can misread them). A minute outside
    DateTime's range (UInt32 seconds) is a StagingError naming it: the driver would otherwise fail
    the insert with an encoding error, the same on every retry."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    names = batch.schema.names
    missing = [c for c in ROLLUP_INPUT_SOURCE if c not in names]
    if missing:
        raise StagingError(f"{_MARK} the rollups frame lacks column(s) {missing}; it has {names}")
    col = {name: batch.column(name) for name in ROLLUP_INPUT_SOURCE}
    minute = col["minute"]
    if pa.types.is_timestamp(minute.type):
        unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[minute.type.unit]
        minute = pc.divide(minute.cast(pa.int64()), unit)
    if n:
        low, high = pc.min(minute).as_py(), pc.max(minute).as_py()
        if low is not None and not (0 <= low and high <= DATETIME_MAX_S):
            raise StagingError(
                f"{_MARK} a minute outside ClickHouse's DateTime range (epoch seconds {low}..{high}, allowed "
                f"0..{DATETIME_MAX_S}): the lake holds events the contract now rejects (out_of_range_time); "
                f"this hour cannot be published"
            )
    return [
        [layer] * n,
        [version] * n,
        col["tenant_id"].to_pylist(),
        minute.to_pylist(),
        col["country"].to_pylist(),
        col["device"].to_pylist(),
        col["page"].to_pylist(),
        col["events"].to_pylist(),
        col["user_ids"].to_pylist(),
    ]


def _chunks(batches, rows: int):
    """Regroup Arrow batches (Spark sends ~10 k rows each) into lists of about ``rows`` rows."""
    pending, size = [], 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            size += batch.num_rows
        if size >= rows:
            yield pending
            pending, size = [], 0
    if pending:
        yield pending


def _insert_partition(target: _Target):
    """The mapInArrow function: runs in a Python worker, once per partition, and yields one row:
    what it inserted (rows, events, first and last minute as epoch seconds)."""

    def run(batches):
        import pyarrow as pa
        from pyspark import TaskContext

        from tidemark.io.clickhouse import client

        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx else -1
        where = f"{target.describe()}, partition {part}"
        if ctx and ctx.attemptNumber() > 0:
            # An earlier attempt may have inserted part of this partition; inserting again would
            # double those rows and nothing could tell which. Fail; the caller drops the version.
            raise StagingError(
                f"{_MARK} refusing retry attempt {ctx.attemptNumber()} for {where}: an earlier "
                f"attempt may have inserted some rows. Remove version {target.version} and "
                f"stage again under a new one"
            )
        sent = events = 0
        first = last = None
        ch = None
        try:
            for group in _chunks(batches, INSERT_ROWS):
                columns = arrow_columns(pa.Table.from_batches(group), target.layer, target.version)
                if ch is None:
                    ch = client(target.cfg, send_receive_timeout=300)
                ch.execute(insert_sql(target.table), columns, columnar=True)
                sent += len(columns[0])
                events += sum(columns[7])
                first = min(columns[3]) if first is None else min(first, min(columns[3]))
                last = max(columns[3]) if last is None else max(last, max(columns[3]))
        except StagingError:
            raise
        except Exception as exc:  # re-raised with what failed and what to do
            raise StagingError(
                f"{_MARK} inserting {where} failed after {sent} rows: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Rows of this version may be "
                f"partly inserted: remove version {target.version} and stage again"
            ) from exc
        finally:
            if ch is not None:
                ch.disconnect()
        yield pa.RecordBatch.from_pydict(
            {"rows": [sent], "events": [events], "first_minute": [first], "last_minute": [last]},
            schema=pa.schema(_REPORT),
        )

    return run


_REPORT = [("rows", "int64"), ("events", "int64"), ("first_minute", "int64"), ("last_minute", "int64")]


def _check_exact(target: _Target, events: int, first: int, last: int) -> None:
    """Every successful partition reported what it inserted; ClickHouse must hold exactly that many
    events under the version. More means an attempt that failed (or a stage re-run after a lost
    shuffle, which Python cannot see as a retry) left rows behind, or the version was not fresh."""
    from tidemark.io.clickhouse import client

    ch = client(target.cfg)
    ((found,),) = ch.execute(
        f"SELECT sum(events) FROM {target.cfg.database}.minute_rollups WHERE layer = %(l)s AND version = %(v)s "
        f"AND minute >= toDateTime(%(s)s) AND minute <= toDateTime(%(e)s)",
        {"l": target.layer, "v": target.version, "s": first, "e": last},
    )
    if int(found or 0) != events:
        raise StagingError(
            f"staging rollups {target.describe()}: ClickHouse holds {int(found or 0)} events under "
            f"the version, the partitions inserted {events}: rows of a failed attempt or an earlier "
            f"staging are mixed in. Remove version {target.version} and stage again under a new one"
        )


def worker_message(exc: BaseException) -> str | None:
    """The StagingError text a Python worker raised, from the (long) Spark exception around it."""
    found = re.findall(rf"{re.escape(_MARK)}\s*(.+)", str(exc))
    return found[-1].strip() if found else None


def stage_rollups(rollups, cfg: ClickHouseSettings, version: int, *, layer: str = "batch") -> int:
    """Insert a minute-rollups DataFrame (tenant_id, minute, country, device, page, events,
    user_ids; see tidemark.transforms.rollups) into ``{db}.rollup_input`` as (layer, version),
    from the executors. Returns the rows inserted, summed from what each partition reports.

    Not idempotent: on StagingError, rows of ``version`` may be partly inserted; the caller
    removes the whole version before staging again (see the module docstring)."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
    if not 0 < version < 2**64:
        raise ValueError(f"version {version} does not fit rollup_input.version (UInt64, > 0)")
    target = _Target(cfg, int(version), layer)
    reports = rollups.select(*ROLLUP_INPUT_SOURCE).mapInArrow(
        _insert_partition(target), ", ".join(f"{name} long" for name, _ in _REPORT)
    )
    try:
        done = [r for r in reports.collect() if r["rows"]]
    except Exception as exc:  # re-raised below: Spark wraps worker errors in long Java traces
        detail = worker_message(exc)
        if detail is None:
            first_line = str(exc).splitlines()[0][:500] if str(exc) else ""
            detail = (
                f"{target.describe()}: {type(exc).__name__}: {first_line}."
                f" Remove version {target.version} and stage again under a new one"
            )
        raise StagingError(f"staging rollups failed: {detail}") from exc
    staged = sum(r["rows"] for r in done)
    if done:
        _check_exact(
            target,
            sum(r["events"] for r in done),
            min(r["first_minute"] for r in done),
            max(r["last_minute"] for r in done),
        )
    log.info("rollups staged", extra={"version": version, "layer": layer, "rows": staged, "table": target.table})
    return staged
