"""Helpers of the serving tests: fill rollups the way the pipeline does (INSERT into rollup_input),
and publish an hour the way the batch layer does (one published_hours row)."""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone

from tidemark.io.clickhouse import insert_rows
from tidemark.tables import ROLLUP_INPUT_COLUMNS


def tenant_name(label: str) -> str:
    """A tenant id unique to this run, so a kept test database never mixes runs."""
    return f"{label}-{secrets.token_hex(3)}"


def insert_minutes(ch, db: str, rows, layer: str = "stream", version: int = 1) -> None:
    """rows: (tenant, minute datetime, country, device, page, events, [user ids])."""
    insert_rows(ch, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, [(layer, version, *r) for r in rows])


def publish(ch, db: str, hour: datetime, version: int) -> None:
    """The batch layer's atomic switch (tidemark/batch/registry.record): one published_hours row."""
    from tidemark.batch.registry import REGISTRY_COLUMNS

    now = datetime.now(timezone.utc)
    insert_rows(
        ch,
        f"{db}.published_hours",
        REGISTRY_COLUMNS,
        [(hour, version, "published", now, int(time.time() * 1_000_000), 0, 0, 0, 0, 0, "serving-test", "", "")],
    )
