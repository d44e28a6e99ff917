"""Generated traffic as the rows both layers insert into ClickHouse (``rollup_input``), for tests and
benches that need rollups of known content without the stream: a ``Manifest`` that also keeps, per
(tenant, minute, country, device, page), the events and the distinct user ids."""

from __future__ import annotations

from datetime import datetime, timezone

from tidemark.generator.manifest import Manifest
from tidemark.generator.options import MINUTE_MS


class RollupManifest(Manifest):
    """``grain_ms``: the time bucket of the rows (a minute, as the pipeline writes; an hour makes
    fewer rows when only hourly questions are asked)."""

    def __init__(self, grain_ms: int = MINUTE_MS) -> None:
        super().__init__()
        self.grain_ms = grain_ms
        self._rows: dict[tuple, list] = {}

    def add_valid(
        self, tenant: str, event_ms: int, country: str, device: str, page: str, user: str, late: bool
    ) -> None:
        super().add_valid(tenant, event_ms, country, device, page, user, late)
        key = (tenant, event_ms // self.grain_ms, country, device, page)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = [0, set()]
        row[0] += 1
        row[1].add(user)

    def rollup_rows(self, layer: str, version: int) -> list[tuple]:
        """``rollup_input`` rows (``tidemark.tables.ROLLUP_INPUT_COLUMNS`` order)."""
        grain_s = self.grain_ms // 1000
        return [
            (layer, version, t, datetime.fromtimestamp(b * grain_s, timezone.utc), c, d, p, n, sorted(users))
            for (t, b, c, d, p), (n, users) in self._rows.items()
        ]
