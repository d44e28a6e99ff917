#!/usr/bin/env bash
# `make demo`: the whole lambda story on the embedded stack, in under 10 minutes.
#   stack (+ Airflow) up -> speed layer via spark-submit -> two past hours of traffic with late,
#   duplicate and malformed events, plus a live burst -> stream reconciliation and freshness ->
#   hourly_recompute for the past hours through Airflow's scheduler (backfill over the REST API, waited
#   for) -> sent vs streaming vs batch-corrected. TIDEMARK_BATCH_START (the first past hour) is exported
#   before `stack up` starts Airflow: hourly_recompute's catchup starts there, not at a fixed date.
# Leaves everything running, the DAGs unpaused on their schedules; `make down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
TM=.venv/bin/tidemark
PY=.venv/bin/python
export SPARK_LOCAL_IP=127.0.0.1 TIDEMARK_LOG_FORMAT=${TIDEMARK_LOG_FORMAT:-text} TIDEMARK_AIRFLOW=1
RATE=${DEMO_RATE:-1000}
LIVE_SECONDS=${DEMO_SECONDS:-30}
home=$($PY -c 'from tidemark.config import settings; print(settings().home)')
mkdir -p "$home/demo"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
# The batch layer's work: the two latest hours that are complete, i.e. whose end + the allowed lateness
# has passed (the hourly sensor waits for that; in the first minutes of an hour it is one hour earlier).
read -r H1 H2 HSTART WARM_START <<<"$($PY -c '
from datetime import datetime, timedelta, timezone
from tidemark.config import settings
clock = datetime.now(timezone.utc)
now = (clock - timedelta(seconds=settings().spark.allowed_lateness_s + 60)).replace(minute=0, second=0, microsecond=0)
h1, h2 = now - timedelta(hours=2), now - timedelta(hours=1)
print(h1.strftime("%Y-%m-%dT%H"), h2.strftime("%Y-%m-%dT%H"), (h1 + timedelta(seconds=10)).isoformat(),
      (clock - timedelta(days=1)).replace(microsecond=0).isoformat())')"
export TIDEMARK_BATCH_START="${H1}:00:00+00:00"

step() { printf '\n== %s\n' "$*"; }
failed=()

step "embedded stack: Apache Kafka (KRaft), ClickHouse, Redis, Airflow"
$TM stack up

step "speed layer (spark-submit jobs/stream_events.py, detached)"
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
$TM stream --detach

step "warming up the stream: 5,000 events of yesterday (a cold JVM's first micro-batches take 10-25 s)"
warm="$home/demo/manifest-warmup-$stamp.json"
$TM generate --count 5000 --rate 1000 --start-time "$WARM_START" --no-realtime --seed 1 --late-fraction 0 \
  --no-progress --manifest "$warm" >/dev/null
$TM reconcile --manifest "$warm" --wait 300 2>&1 | head -1 || true
# committed_at has 1 s resolution: start the next window in a later second than the last commit.
sleep 2

step "live traffic: ${RATE} ev/s for ${LIVE_SECONDS}s (duplicates and malformed events; late ones come with the past hours)"
live="$home/demo/manifest-live-$stamp.json"
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
$TM generate --rate "$RATE" --duration "$LIVE_SECONDS" --seed "$RANDOM" --late-fraction 0 \
  --duplicate-fraction 0.02 --malformed-fraction 0.01 --poison-fraction 0.0005 --manifest "$live"

step "speed layer: live traffic sent vs published (exactly once) and measured freshness"
# --wait blocks until the stream has committed every offset now in the topic: no sleep-and-hope.
$TM reconcile --manifest "$live" --since "$since" --wait 300 || failed+=("live reconciliation")

step "traffic for the past hours $H1 and $H2, as a backlog (late, duplicate and malformed events included)"
past="$home/demo/manifest-past-$stamp.json"
sleep 2  # (see above: the live traffic's last commit stays out of this window)
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# 14,000 events over 1 h 59 min: they end before the current hour, whose minutes hold the live traffic.
$TM generate --count 14000 --rate 1.96 --start-time "$HSTART" --no-realtime --seed "$RANDOM" \
  --late-fraction 0.05 --min-lateness 15m --max-lateness 40m --duplicate-fraction 0.02 \
  --malformed-fraction 0.01 --manifest "$past"
$TM reconcile --manifest "$past" --since "$since" --wait 300 | grep -v freshness || failed+=("past-hours reconciliation")

step "batch layer: hourly_recompute for $H1 and $H2 through Airflow's scheduler (a backfill over the REST API)"
# The runs show in the UI with their logs; the DAG stays unpaused, so it runs hourly from here on.
$TM batch-run --hour "$H1" --hour "$H2" --timeout 900 || failed+=("hourly_recompute $H1..$H2")

step "reconciliation: sent vs streaming vs batch-corrected (past hours)"
$TM batch-report --manifest "$past" --hour "$H1" --hour "$H2" || failed+=("batch-corrected totals")
echo "rejected by reason (past hours): $($PY -c "import json; print(json.load(open('$past'))['malformed'])")"

step "quality"
$TM quality docs

# --- serving (issue 9): the dashboard API and page, with a key for the demo's biggest tenant --------
step "serving: dashboard API + page (tidemark serve --detach), a demo API key"
SERVE_URL="http://$($PY -c 'from tidemark.config import settings; s = settings().serving; print(f"{s.host}:{s.port}")')"
$TM serve --detach || failed+=("serving API")
DEMO_TENANT=$($PY - <<'PYEOF'
from tidemark.config import settings
from tidemark.io.clickhouse import client
cfg = settings()
rows = client(cfg.clickhouse).execute(
    f"SELECT tenant_id FROM {cfg.clickhouse.database}.minute_rollups GROUP BY tenant_id ORDER BY sum(events) DESC LIMIT 1")
print(rows[0][0] if rows else "demo")
PYEOF
)
DEMO_KEY=$($TM keys create --tenant "$DEMO_TENANT" --name demo --json | $PY -c 'import json, sys; print(json.load(sys.stdin)["key"])') \
  || failed+=("demo API key")
# --- end serving ---------------------------------------------------------------------------------

# --- tiering (issue 10): what the daily tiering DAG would do now; --dry-run changes nothing -------
step "tiering: dry-run report (tidemark tiering run --dry-run)"
$TM tiering run --dry-run || failed+=("tiering dry run")
# --- end tiering ---------------------------------------------------------------------------------

# --- SLOs (issue 20): a few dashboard questions, then the four SLOs over the demo's data -----------
step "SLOs: tidemark slo report (freshness, query latency, availability, events ingested) and its chart"
SERVE_URL="$SERVE_URL" DEMO_KEY="$DEMO_KEY" $PY - <<'PYEOF' || failed+=("dashboard queries for the SLOs")
# Waits on facts: the API accepts a new key within its background key refresh (a 401 until then), and
# each API process flushes its latency histograms to ClickHouse every 10 s.
import os, time, urllib.error, urllib.request
from tidemark.config import settings
from tidemark.io.clickhouse import client

def ask(range_: str) -> None:
    req = urllib.request.Request(f"{os.environ['SERVE_URL']}/api/v1/totals?range={range_}",
                                 headers={"X-API-Key": os.environ["DEMO_KEY"]})
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(req, timeout=30).read()
            return
        except urllib.error.HTTPError as e:
            if e.code != 401 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)

started = int(time.time()) // 60 * 60
for range_ in ("24h", "7d", "90d"):
    ask(range_)
cfg = settings()
ch, db = client(cfg.clickhouse), cfg.clickhouse.database
deadline = time.monotonic() + 60
while not ch.execute(f"SELECT count() FROM {db}.slo_api_latency WHERE route = '/api/v1/totals' "
                     f"AND minute >= toDateTime({started})")[0][0]:
    if time.monotonic() > deadline:
        raise SystemExit("the API's latency histograms never reached ClickHouse (slo_api_latency) in 60 s")
    time.sleep(1)
PYEOF
$TM slo report --window 24h || failed+=("SLO report")
# --- end SLOs ------------------------------------------------------------------------------------

step "status"
$TM status || true

# Last, so their first runs (catchup=False: each runs its latest interval at once) do not slow the demo.
step "schedules: late_data_recompute (every 15 min) and tiering (daily) unpaused"
$TM batch-run --unpause late_data_recompute --unpause tiering || failed+=("unpausing the other DAGs")
cat <<EOT

Airflow UI:   http://127.0.0.1:$($PY -c 'from tidemark.config import settings; print(settings().airflow.port)')   login admin / $($PY -c 'from tidemark.config import settings; from tidemark.stack.airflow import admin_password; print(admin_password(settings()))')
ClickHouse:   clickhouse-client --port $($PY -c 'from tidemark.config import settings; c = settings().clickhouse; print(c.port, "-d", c.database)')
Dashboard:    ${SERVE_URL}/   API key (tenant ${DEMO_TENANT}): ${DEMO_KEY}   (API docs: ${SERVE_URL}/docs)
Manifests:    $past
              $live
Everything is still running. Stop it all with: make down
EOT
if [ ${#failed[@]} -gt 0 ]; then
  echo "DEMO FAILED: ${failed[*]}" >&2
  exit 1
fi
