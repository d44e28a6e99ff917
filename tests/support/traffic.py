"""The generator's records judged as the pipeline judges them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tidemark import contract
from tidemark.generator.options import TrafficOptions


def validate(rec, opts: TrafficOptions):
    """The event ``contract.validate`` makes of a generated record, at its Kafka timestamp and with
    the traffic options' limits (raises as the validator does for a faulty one)."""
    return contract.validate(
        rec.value,
        datetime.fromtimestamp(rec.timestamp_ms / 1000, timezone.utc),
        max_payload_bytes=opts.max_payload_bytes,
        max_future_skew=timedelta(seconds=opts.max_future_skew_s),
        retention=timedelta(days=opts.retention_days),
    )
