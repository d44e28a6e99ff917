"""Deterministic page-view traffic with injected faults (pure: no I/O, no clock).

The stream is a sequence of ``count`` Kafka records on a simulated clock:
record ``i`` is sent at ``start_ms + floor(i * 1000 / rate)`` and carries that
instant as its Kafka timestamp. Each slot holds exactly one of

* a due **duplicate**: the exact bytes, key and timestamp-shifted re-send of an
  earlier on-time event, 1-60 s (simulated) after it, to the original partition
  or (about half the time) to ``(original + 1) % partitions``;
* a **malformed** record (probability ``malformed_fraction``), whose payload
  ``tidemark.contract.validate`` rejects with exactly the reason named by its
  kind (kinds taken round-robin over ``MALFORMED_KINDS``);
* a **poison** record (probability ``poison_fraction``, default 0): JSON nested
  ``poison_depth`` levels deep, which ``json.loads`` answers with RecursionError
  rather than JSONDecodeError (a kind the malformed kinds do not cover); the
  manifest counts it under ``poison`` with the reason a validator is expected to
  give it (``POISON_REASON``);
* a **valid** event: on time (event_time = send time minus 0-5 s, or up to
  ``ontime_max_lateness`` for a ``ontime_lag_fraction`` of them, never beyond the
  pipeline's 10 minute allowed lateness) or, with probability ``late_fraction``,
  late ("mobile offline": event_time = send time minus a lateness uniform in
  [min_lateness, max_lateness]). With probability ``hour_boundary_fraction`` a
  valid event's time is instead put exactly on an hour boundary (xx:59:59.999 or
  xx:00:00.000) inside the same lateness window, when the window holds one. An
  on-time event is duplicated later with probability ``duplicate_fraction``, at
  a delay that keeps the copy within the allowed lateness of its event time.

Everything is drawn from ``random.Random`` instances seeded from the options,
so the same options give byte-identical records. Event ids come from their own
generator seeded by (seed, start time): reruns with the same seed at another
start time do not collide with earlier runs' ids.

Modules: ``options`` (what to generate), ``catalog`` (what the simulated web looks like),
``partitioner`` (Kafka's placement), ``manifest`` (the truth to reconcile against).

Records are keyed by user_id. Their partition is computed exactly as
kafka-python's DefaultPartitioner and the Java client do (murmur2 of the key,
positive, modulo partitions; librdkafka's ``murmur2_random`` partitioner is the
same), cached per user, so ``--output`` files and Kafka agree. The producer is
always given this partition explicitly.

With every new option at its default the records are byte-identical to those
of earlier versions for the same options (no extra random draws are made).

Over 400 lines on purpose: ``TrafficGenerator`` is one class because the order of its random draws
*is* that byte-identical contract; its parts (options, catalog, partitioner, manifest) live beside it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from bisect import bisect
from collections.abc import Iterator
from typing import NamedTuple

from tidemark.contract import required_fields
from tidemark.generator.catalog import (
    DEVICE_CUM,
    REFERRERS,
    TENANT_NAMES,
    UUID4_VARIANT,
    Tenant,
    cdf,
    uuid4_from_bits,
)
from tidemark.generator.injections import Shaper
from tidemark.generator.manifest import Manifest
from tidemark.generator.options import (
    DAY_MS,
    HOUR_MS,
    MALFORMED_KINDS,
    MAX_DUPLICATE_DELAY_MS,
    MAX_ON_TIME_JITTER_MS,
    MIN_DUPLICATE_DELAY_MS,
    PIPELINE_ALLOWED_LATENESS_MS,
    POISON_KIND,
    TrafficOptions,
)

log = logging.getLogger(__name__)


class Record(NamedTuple):
    key: bytes
    value: bytes
    timestamp_ms: int
    partition: int
    kind: str  # "on_time", "late", "duplicate" or a malformed kind


_TEMPLATE = (
    '{"schema_version":1,"event_id":"%s","tenant_id":"%s","event_time":%s,"user_id":"%s",'
    '"session_id":"%s","country":"%s","device":"%s","page":"%s"%s}'
)


class TrafficGenerator:
    """Iterate ``records()`` once; ``manifest`` accumulates the truth as records are produced."""

    def __init__(self, options: TrafficOptions, manifest: Manifest | None = None):
        options.check()
        self.options = options
        self.manifest = manifest if manifest is not None else Manifest()
        self._rng = random.Random(options.seed)
        self._ids = random.Random(f"event-ids:{options.seed}:{options.start_ms}")
        self._iso_cache: dict[int, str] = {}
        self._n_valid = 0
        rng = self._rng
        weights = [1.0 / (k**1.5) for k in range(1, options.tenants + 1)]
        total = sum(weights)
        names = [TENANT_NAMES[i] if i < len(TENANT_NAMES) else f"tenant-{i:04d}" for i in range(options.tenants)]
        # Pools grow with a tenant's share of traffic but stay bounded.
        # catalog_seed: the same sites (users, pages, home country) across separate runs.
        sites = rng if options.catalog_seed is None else random.Random(f"catalog:{options.catalog_seed}")
        self.tenants = [
            Tenant(names[i], max(200, int(40_000 * weights[i] / total)), sites, options.partitions)
            for i in range(options.tenants)
        ]
        self._tenant_cdf = cdf(weights)
        self._kind_offset = rng.randrange(len(MALFORMED_KINDS))
        self._n_malformed = 0
        # Injected anomalies and the traffic shape draw from their own generator (injections.py).
        self._shaper = Shaper(options.injections, options.seasonality, options.seed)

    # -- formatting ---------------------------------------------------------------
    def iso_ms(self, ms: int) -> str:
        """``YYYY-MM-DDTHH:MM:SS.mmmZ`` for epoch milliseconds."""
        sec, milli = divmod(ms, 1000)
        prefix = self._iso_cache.get(sec)
        if prefix is None:
            if len(self._iso_cache) > 50_000:
                self._iso_cache.clear()
            prefix = self._iso_cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{prefix}.{milli:03d}Z"

    def _event_time_json(self, ms: int) -> str:
        """Alternate the two valid encodings: ISO-8601 'Z' with ms, and epoch-ms integers."""
        self._n_valid += 1
        if self._n_valid & 1:
            return f'"{self.iso_ms(ms)}"'
        return str(ms)

    def _event_id(self) -> str:
        return uuid4_from_bits(self._ids.getrandbits(128))

    # -- sampling -----------------------------------------------------------------
    def _sample(self, send_ms: int):
        """(tenant, user index) plus the event's dimensions; rotates the user's session."""
        rnd = self._rng.random
        tenant = self.tenants[bisect(self._tenant_cdf, rnd())]
        n_users = len(tenant.users)
        u = int(n_users * rnd() ** 1.5)  # some users are much more active than others
        if u >= n_users:
            u = n_users - 1
        session = tenant.sessions[u]
        if session is None or send_ms >= tenant.session_end[u]:
            session = tenant.sessions[u] = f"s-{self._rng.getrandbits(64):016x}"
            tenant.session_end[u] = send_ms + 300_000 + int(rnd() * 2_400_000)  # 5-45 min
        country = tenant.country_codes[bisect(tenant.country_cdf, rnd())]
        r = rnd()
        for threshold, device in DEVICE_CUM:  # noqa: B007 - the device is the loop's result, read after the break
            if r < threshold:
                break
        page = tenant.pages[bisect(tenant.page_cdf, rnd())]
        r = rnd()
        if r < 0.35:
            referrer = ""  # field absent
        elif r < 0.45:
            referrer = ',"referrer":null'
        elif r < 0.60:
            referrer = f',"referrer":"{tenant.site}"'
        else:
            referrer = f',"referrer":"{REFERRERS[int(rnd() * len(REFERRERS))]}"'
        return tenant, u, session, country, device, page, referrer

    # -- records ------------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        o = self.options
        m = self.manifest
        rnd = self._rng.random
        randint = self._rng.randint
        sample = self._sample
        id_bits = self._ids.getrandbits
        variant = UUID4_VARIANT
        event_time_json = self._event_time_json
        count = o.count
        start_ms = o.start_ms
        ms_per_record = 1000.0 / o.rate
        late_f, dup_f, bad_f = o.late_fraction, o.duplicate_fraction, o.malformed_fraction
        poison_f, boundary_f, lag_f = o.poison_fraction, o.hour_boundary_fraction, o.ontime_lag_fraction
        min_late, max_late = o.min_lateness_ms, o.max_lateness_ms
        late_span = max_late - min_late + 1
        on_max = o.ontime_max_lateness_ms
        on_span = on_max + 1
        short_span = min(on_max, MAX_ON_TIME_JITTER_MS) + 1
        allowed = PIPELINE_ALLOWED_LATENESS_MS
        partitions = o.partitions
        pending: dict[int, tuple[bytes, bytes, int]] = {}  # slot -> (key, value, partition)
        add_valid = m.add_valid
        template = _TEMPLATE
        shaper = self._shaper if self._shaper.on else None
        last_ms = start_ms + int((count - 1) * ms_per_record)

        for i in range(count):
            ts = start_ms + int(i * ms_per_record)
            if pending:
                due = pending.pop(i, None)
                if due is not None:
                    m.add_duplicate()
                    yield Record(due[0], due[1], ts, due[2], "duplicate")
                    continue
            if poison_f and rnd() < poison_f:
                key, value, partition = self.poison(ts)
                m.add_poison()
                yield Record(key, value, ts, partition, POISON_KIND)
                continue
            if rnd() < bad_f:
                kind = MALFORMED_KINDS[(self._kind_offset + self._n_malformed) % len(MALFORMED_KINDS)]
                self._n_malformed += 1
                key, value, partition = self.malformed(kind, ts)
                m.add_malformed(kind)
                yield Record(key, value, ts, partition, kind)
                continue

            tenant, u, session, country, device, page, referrer = sample(ts)
            late = rnd() < late_f
            if late:
                lateness = min_late + int(rnd() * late_span)
                if rnd() < 0.8:
                    device = "mobile"  # phones that were offline
            elif lag_f >= 1.0 or rnd() < lag_f:
                lateness = int(rnd() * on_span)
            else:
                lateness = int(rnd() * short_span)
            if boundary_f and rnd() < boundary_f:
                # Exactly on an hour boundary, inside the same lateness window (when it holds one).
                lo, hi = (ts - max_late, ts - min_late) if late else (ts - on_max, ts)
                top = hi - hi % HOUR_MS  # the last xx:00:00.000 at or before hi
                end_of_hour = rnd() < 0.5
                if top - 1 >= lo:
                    lateness = ts - (top - 1 if end_of_hour else top)
                elif top >= lo:
                    lateness = ts - top
            event_ms = ts - lateness
            # 0: the event is not sent (shape, drop, dead page); > 1: a spike's extra events follow it.
            copies = shaper.copies(tenant.name, event_ms, page) if shaper else 1
            on_boundary = event_ms % HOUR_MS
            if copies and (on_boundary == 0 or on_boundary == HOUR_MS - 1):  # placed there, or by chance
                m.add_hour_boundary(on_boundary != 0, late)
            user = tenant.users[u]
            h = "%032x" % id_bits(128)  # noqa: UP031 - uuid4_from_bits, inlined; %-format is the faster one
            value = (
                template
                % (
                    f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:]}",
                    tenant.name,
                    event_time_json(event_ms),
                    user,
                    session,
                    country,
                    device,
                    page,
                    referrer,
                )
            ).encode()
            key = tenant.user_keys[u]
            partition = tenant.user_partitions[u]
            if partition < 0:
                partition = tenant.partition(u)
            if copies:
                add_valid(tenant.name, event_ms, country, device, page, user, late)

            if not late and dup_f and rnd() < dup_f:
                # Near the end, draw from the time left so short runs keep their duplicate rate; a
                # copy also stays within the allowed lateness of its event time (binding only with
                # on-time lateness near 10 minutes).
                room = min(last_ms - ts, allowed - lateness)
                if room >= MIN_DUPLICATE_DELAY_MS:
                    delay = randint(MIN_DUPLICATE_DELAY_MS, min(MAX_DUPLICATE_DELAY_MS, room))
                    slot = i + max(1, int(delay / ms_per_record))
                    while start_ms + int(slot * ms_per_record) - ts < delay:
                        slot += 1
                    while slot in pending:
                        slot += 1
                    other = rnd() < 0.5 and partitions > 1
                    if copies and slot < count and start_ms + int(slot * ms_per_record) - event_ms <= allowed:
                        pending[slot] = (key, value, (partition + 1) % partitions if other else partition)
            if copies:
                yield Record(key, value, ts, partition, "late" if late else "on_time")
                for _ in range(copies - 1):
                    yield self._spike_event(ts, tenant)

    def _spike_event(self, ts: int, tenant) -> Record:
        """An extra on-time event of ``tenant`` at ``ts`` (a spike), drawn from the injections'
        own generator so the main stream keeps its draws."""
        rnd = self._shaper.rng.random
        u = min(int(len(tenant.users) * rnd() ** 1.5), len(tenant.users) - 1)
        country = tenant.country_codes[bisect(tenant.country_cdf, rnd())]
        r = rnd()
        device = next(d for threshold, d in DEVICE_CUM if r < threshold)
        page = tenant.pages[bisect(tenant.page_cdf, rnd())]
        event_ms = ts - int(rnd() * MAX_ON_TIME_JITTER_MS)
        value = (
            _TEMPLATE
            % (
                uuid4_from_bits(self._shaper.rng.getrandbits(128)),
                tenant.name,
                self._event_time_json(event_ms),
                tenant.users[u],
                f"s-spike-{self._shaper.rng.getrandbits(64):016x}",
                country,
                device,
                page,
                "",
            )
        ).encode()
        self.manifest.add_valid(tenant.name, event_ms, country, device, page, tenant.users[u], False)
        return Record(tenant.user_keys[u], value, ts, tenant.partition(u), "on_time")

    # -- poison payloads ----------------------------------------------------------
    def poison(self, ts: int) -> tuple[bytes, bytes, int]:
        """(key, payload, partition) of a record nested ``poison_depth`` levels deep.

        ``json.loads`` raises RecursionError on it (not JSONDecodeError) once the depth passes the
        interpreter's recursion limit. Three shapes: nested arrays, nested objects, and a valid-looking
        event whose ``referrer`` is the nested value.
        """
        rng = self._rng
        depth = self.options.poison_depth
        tenant, u, session, country, device, page, _referrer = self._sample(ts)
        shape = rng.randrange(3)
        if shape == 0:
            text = "[" * depth + "]" * depth
        elif shape == 1:
            text = '{"e":' * depth + "{}" + "}" * depth
        else:
            text = _TEMPLATE % (
                self._event_id(),
                tenant.name,
                self._event_time_json(ts),
                tenant.users[u],
                session,
                country,
                device,
                page,
                ',"referrer":' + "[" * depth + "]" * depth,
            )
        return tenant.user_keys[u], text.encode(), tenant.partition(u)

    # -- malformed payloads -------------------------------------------------------
    def _base_doc(self, ts: int) -> tuple[dict, bytes, int]:
        """A valid event document (not counted anywhere) to corrupt, with its key and partition."""
        tenant, u, session, country, device, page, referrer = self._sample(ts)
        doc: dict = {
            "schema_version": 1,
            "event_id": self._event_id(),
            "tenant_id": tenant.name,
            "event_time": json.loads(self._event_time_json(ts - int(self._rng.random() * MAX_ON_TIME_JITTER_MS))),
            "user_id": tenant.users[u],
            "session_id": session,
            "country": country,
            "device": device,
            "page": page,
        }
        if referrer:
            doc["referrer"] = json.loads("{" + referrer[1:] + "}")["referrer"]
        return doc, tenant.user_keys[u], tenant.partition(u)

    def _time_value(self, ms: int):
        return self.iso_ms(ms) if self._rng.random() < 0.5 else ms

    def malformed(self, kind: str, ts: int) -> tuple[bytes, bytes, int]:
        """(key, payload, partition) of a record that the contract rejects with reason ``kind``."""
        rng = self._rng
        o = self.options
        doc, key, partition = self._base_doc(ts)
        dumps = lambda d: json.dumps(d, separators=(",", ":")).encode()  # noqa: E731
        if kind == "not_json":
            payload = rng.choice(
                (
                    f"tenant_id={doc['tenant_id']}&page={doc['page']}&user={doc['user_id']}",
                    f'<pageview tenant="{doc["tenant_id"]}" page="{doc["page"]}"/>',
                    f"page_view {doc['event_id']} {doc['tenant_id']} {doc['page']}",
                    "undefined",
                )
            ).encode()
        elif kind == "truncated_json":
            text = dumps(doc).decode()
            commas = [j for j, ch in enumerate(text) if ch == ","]
            if rng.random() < 0.5:
                cut = rng.choice(commas) + 1  # "...,"  -> expecting a property name at the end
            else:
                start = text.index('"page":"') + len('"page":"')
                cut = rng.randint(start, text.index('"', start))  # inside the page string
            payload = text[:cut].encode()
        elif kind == "missing_field":
            del doc[rng.choice(required_fields())]  # the schema's own list, in its order
            payload = dumps(doc)
        elif kind == "wrong_type":
            field, value = rng.choice(
                (
                    ("user_id", 1234567),
                    ("session_id", True),
                    ("device", 3),
                    ("page", ["/"]),
                    ("country", None),
                    ("schema_version", "1"),
                    ("event_time", [ts]),
                    ("tenant_id", 42),
                    ("event_id", {"id": doc["event_id"]}),
                    ("referrer", 7),
                )
            )
            doc[field] = value
            payload = dumps(doc)
        elif kind == "unknown_device":
            doc["device"] = rng.choice(("smart-tv", "watch", "Desktop", "bot", "console", ""))
            payload = dumps(doc)
        elif kind == "bad_country":
            doc["country"] = rng.choice(("XX", "UK", "usa", "EU", "zz", "", "U S"))
            payload = dumps(doc)
        elif kind == "unparsable_time":
            doc["event_time"] = rng.choice(
                (
                    "yesterday",
                    "2026-13-45T25:61:00Z",
                    "01/12/2026 10:00:00",
                    "",
                    self.iso_ms(ts)[:-5],  # no offset: ambiguous local time
                )
            )
            payload = dumps(doc)
        elif kind == "future_time":
            ahead = max(HOUR_MS, 2 * o.max_future_skew_s * 1000) + rng.randint(0, 47 * HOUR_MS)
            doc["event_time"] = self._time_value(ts + ahead)
            payload = dumps(doc)
        elif kind == "expired_time":
            ago = (o.retention_days + 1) * DAY_MS + rng.randint(0, 30 * DAY_MS)
            doc["event_time"] = self._time_value(ts - ago)
            payload = dumps(doc)
        elif kind == "out_of_range_time":
            # parsable, but outside what the rollups' DateTime stores (1970-01-01 .. 2106-02-07T06:28:15Z)
            doc["event_time"] = rng.choice(
                ("1969-12-31T23:59:59.999Z", "1969-12-25T00:00:00Z", -1, "2106-02-07T06:28:16Z", "9999-12-31T23:59:59Z")
            )
            payload = dumps(doc)
        elif kind == "oversize_payload":
            size = len(dumps(doc))
            doc["page"] = doc["page"] + "/" + "x" * (o.max_payload_bytes - size + rng.randint(1, 8192))
            payload = dumps(doc)
        elif kind == "empty_tenant":
            doc["tenant_id"] = ""
            payload = dumps(doc)
        elif kind == "invalid_utf8":
            body = dumps(doc)
            marker = b'"page":"/'
            bad = rng.choice((b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"))
            payload = body.replace(marker, marker + bad, 1)
        elif kind == "not_an_object":
            payload = rng.choice(
                (
                    b"[" + dumps(doc) + b"]",
                    b"null",
                    b"42",
                    b'"page_view"',
                    b"[]",
                    b"true",
                )
            )
        elif kind == "invalid_event_id":
            eid = doc["event_id"]
            doc["event_id"] = rng.choice(
                (
                    "not-a-uuid",
                    eid.replace("-", ""),
                    "{" + eid + "}",
                    eid[:-4],
                    "",
                    str(rng.getrandbits(64)),
                )
            )
            payload = dumps(doc)
        elif kind == "bad_page":
            doc["page"] = rng.choice(
                (
                    doc["page"].lstrip("/") or "index.html",
                    "",
                    "https://example.com/x",
                    "/" + "p" * 2100,
                )
            )
            payload = dumps(doc)
        elif kind == "unsupported_version":
            doc["schema_version"] = rng.choice((0, 2, 3, 99))
            payload = dumps(doc)
        elif kind == "invalid_tenant":
            doc["tenant_id"] = rng.choice(
                (
                    doc["tenant_id"] + " corp",
                    "-" + doc["tenant_id"],
                    doc["tenant_id"] + "/eu",
                    "\u00e1" + doc["tenant_id"],
                    "t" * 65,
                )
            )
            payload = dumps(doc)
        elif kind == "invalid_field":
            field, value = rng.choice(
                (
                    ("user_id", ""),
                    ("session_id", ""),
                    ("user_id", "u" * 129),
                    ("referrer", "https://r.example/" + "q" * 2100),
                )
            )
            doc[field] = value
            payload = dumps(doc)
        else:
            raise ValueError(f"unknown malformed kind {kind!r}")
        return key, payload, partition


def generate(options: TrafficOptions, manifest: Manifest | None = None) -> tuple[list[Record], Manifest]:
    """All records in memory (tests and small runs)."""
    gen = TrafficGenerator(options, manifest)
    records = list(gen.records())
    return records, gen.manifest
