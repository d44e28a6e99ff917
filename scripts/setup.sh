#!/usr/bin/env bash
# Idempotent setup: system packages, the venv, the npm S3 emulator. Safe to re-run;
# each step checks before it acts, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# --- system packages ----------------------------------------------------------
need=()
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v redis-server      >/dev/null || need+=(redis-server)
command -v java              >/dev/null || need+=(openjdk-17-jre-headless)
command -v node              >/dev/null || need+=(nodejs)
command -v npm               >/dev/null || need+=(npm)
command -v make              >/dev/null || need+=(make)
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

# --- npm: the disk-backed S3 emulator behind the embedded broker ---------------------
if [ ! -x tidemark/stack/npm/node_modules/.bin/s3rver ]; then
  log "npm ci (s3rver)"
  (cd tidemark/stack/npm && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
log "ready"
