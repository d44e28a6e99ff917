"""Tiering and maintenance: what the daily ``tiering`` DAG and ``tidemark tiering run`` do.

Tiers (nothing leaves one tier before the next is verified to hold it):

* **hot**: ``minute_rollups`` keeps ``TIDEMARK_HOT_DAYS`` days (``hot.py``). An older daily partition
  is dropped only after the warm tier holds the same totals for it, read through the lambda merge.
* **warm**: ``hour_rollups`` and ``day_rollups``, written by materialized views at insert time, so a
  republished hour (a new batch version) rebuilds its warm rows by construction (``warm.py``).
* **cold**: raw events older than ``TIDEMARK_LAKE_HOT_DAYS`` move from ``events_raw`` into a compacted,
  tenant-Z-ordered Delta table, counts checked before the hot copy is deleted (``cold.py``).

Maintenance: Delta OPTIMIZE of closed partitions, checkpoints, VACUUM and orphan files
(``delta_maintenance.py``); ClickHouse clean-up, OPTIMIZE and parts watch (``clickhouse_care.py``).
Every step reads one explicit time range (``RunOptions.interval_end``), is idempotent and safe to
kill: a re-run redoes only what is left. ``report.py`` measures the tiers before and after.
"""
