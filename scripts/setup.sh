#!/usr/bin/env bash
# Idempotent setup: system packages (Java 17, Maven, ClickHouse, Redis), the venv, and the JVM jars
# (Spark's Kafka source + Delta, and the Apache Kafka broker) from Maven Central. Safe to re-run;
# each step checks before it acts, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# --- system packages ----------------------------------------------------------
java_major() {  # "17" from 'openjdk version "17.0.15" ...'; empty without java
  java -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p'
}
need=()
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v redis-server      >/dev/null || need+=(redis-server)
# Airflow's metadata database in the celery mode (TIDEMARK_AIRFLOW_MODE=celery): Debian's server, 15 on bookworm.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# Kafka 4 brokers need Java 17+.
jv=$(command -v java >/dev/null && java_major || true)
if [ -z "$jv" ] || [ "$jv" -lt 17 ]; then need+=(openjdk-17-jre-headless); fi
command -v mvn               >/dev/null || need+=(maven)
command -v make              >/dev/null || need+=(make)
# Serving: npm vendors the dashboard's chart library; the browser test drives Debian's chromium.
command -v npm               >/dev/null || need+=(npm)
command -v chromium          >/dev/null || need+=(chromium)
command -v chromedriver      >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts a system-wide server on the default ports; Tidemark runs its own.
if command -v systemctl >/dev/null && systemctl is-active --quiet clickhouse-server 2>/dev/null; then
  $SUDO systemctl stop clickhouse-server || true
fi
# Likewise Debian's postgresql starts a cluster on 5432; Tidemark's own (celery mode) lives under TIDEMARK_HOME.
if command -v systemctl >/dev/null && systemctl is-active --quiet postgresql 2>/dev/null; then
  $SUDO systemctl stop postgresql || true
fi

# --- Python venv ------------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
stamp=.venv/.tidemark-deps
want=$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "pip install (pyspark builds from a 450 MB sdist on first install: a few minutes)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

# --- dashboard assets (npm) ----------------------------------------------------------
# tidemark/serving/static/package-lock.json -> node_modules (git-ignored), served by the app (no CDN).
# Re-installed only when the lock changes (its sha256 is the stamp). --ignore-scripts: nothing runs.
assets=tidemark/serving/static
want=$(sha256sum "$assets/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$assets/node_modules/.lock.sha256" 2>/dev/null)" != "$want" ]; then
  log "npm ci in $assets"
  (cd "$assets" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$assets/node_modules/.lock.sha256"
fi

# --- JVM jars from Maven Central ---------------------------------------------------
# jvm/<x>/pom.xml -> jvm/lib/<x>/ (git-ignored), one folder per consumer so the broker's kafka-clients
# never meets Spark's on one classpath. Re-copied only when the pom changes (its sha256 is the stamp).
# The copy goes to a scratch folder first and is swapped in whole, so a failed or interrupted Maven run
# never leaves a half-filled folder, and no stale jar from an older pom survives.
jvm_jars() {
  local x=$1 pom=jvm/$1/pom.xml out=jvm/lib/$1
  local want; want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -d "$out" ] && [ "$(cat "$out/.pom.sha256" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  local tmp=jvm/lib/.$x.tmp old=jvm/lib/.$x.old
  rm -rf "$tmp" "$old"
  mkdir -p "$tmp"
  log "mvn dependency:copy-dependencies $pom -> $out"
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
         -DoutputDirectory="$PWD/$tmp" >"jvm/lib/.$x.mvn.log" 2>&1; then
    tail -n 20 "jvm/lib/.$x.mvn.log" >&2
    rm -rf "$tmp"
    log "Maven could not resolve $pom (is Maven Central reachable?); full log: jvm/lib/.$x.mvn.log"
    return 1
  fi
  rm -f "jvm/lib/.$x.mvn.log"
  echo "$want" > "$tmp/.pom.sha256"
  [ -d "$out" ] && mv "$out" "$old"
  mv "$tmp" "$out"
  rm -rf "$old"
  log "  $(find "$out" -name '*.jar' | wc -l) jars, $(du -sh "$out" | cut -f1)"
}
mkdir -p jvm/lib
mvn_started=$(date +%s.%N)
mvn_ran=0
for x in spark kafka s3a s3proxy; do
  before=$(cat "jvm/lib/$x/.pom.sha256" 2>/dev/null || true)
  jvm_jars "$x"
  [ "$before" = "$(cat "jvm/lib/$x/.pom.sha256")" ] || mvn_ran=1
done
if [ "$mvn_ran" = 1 ]; then
  log "jvm jars ready in $(awk -v a="$mvn_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
fi
log "ready"
