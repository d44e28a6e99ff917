"""Every command README.md shows works when pasted into a fresh shell: no venv activated (PATH holds
only the system's directories, whose ``python3`` has no pyspark), nothing exported but Tidemark's own
settings, which point the commands at this session's stack (its ports and home) instead of a demo's.

Each ```bash block runs as one script (a block's variables carry from line to line), stopping at the
first failing command. A command runs as written unless a table below says otherwise, with why; so a
new README command is run by this test from the day it is written.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"

# Not run here, and why.
SKIP = {
    "make demo": "the whole demo (installs, starts Airflow, streams for minutes)",
    "make test": "the suite this test is part of",
    ".venv/bin/tidemark stream --detach": "starts the speed layer on the session's topic (the stream tests run it)",
    ".venv/bin/tidemark stream --detach --checkpoint /data/ckpt-2 --candidate": "starts a second stream",
    '.venv/bin/tidemark stream-promote /data/ckpt-2 --reason "reset after the broker move"': (
        "changes which stream serves the session's topic, and needs the candidate above"
    ),
    "TIDEMARK_STACK=cluster .venv/bin/tidemark stack up": "starts the cluster profile (tests/integration/cluster)",
    "TIDEMARK_STACK=cluster .venv/bin/tidemark stream --detach": "needs the cluster profile",
    "TIDEMARK_STACK=cluster .venv/bin/tidemark recompute --hour 2026-11-25T03": "needs the cluster profile",
    "TIDEMARK_STACK=cluster .venv/bin/tidemark stack down": "would stop the session's ClickHouse and Redis too",
    "curl -H \"X-API-Key: $KEY\" 'http://127.0.0.1:8088/api/v1/timeseries?range=7d&metric=users&compare=true'": (
        "needs `tidemark serve` on the default port (the serving tests run the API)"
    ),
}

# Run with --help appended: a real run would take minutes (a Spark job; 60 s of real-time traffic
# into the session's topic). --help still proves what a fresh shell breaks: the launcher resolves
# Spark (SparkSubmit starts) and the venv's Python runs the job's own argument parser.
HELP = {
    ".venv/bin/tidemark submit jobs/recompute_hour.py --hour 2026-11-25T03": "usage: recompute_hour",
    ".venv/bin/tidemark submit jobs/stream_events.py --available-now": "usage:",
    ".venv/bin/tidemark generate --rate 2000 --duration 60 --manifest /tmp/manifest.json": "usage:",
}

# Interactive: what is typed into them here. The shell's driver must be the venv's Python (where
# pyspark and tidemark are), started by spark-submit (so Spark was found).
STDIN = {
    ".venv/bin/tidemark pyspark": (
        "import os, sys, pyspark, tidemark; print('driver', os.path.realpath(sys.prefix))",
        f"driver {VENV.resolve()}",
    ),
}


@dataclass
class Block:
    line: int  # of the opening fence, for the test id
    commands: list[str]


def readme_blocks() -> list[Block]:
    blocks, current = [], None
    for number, text in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        if current is None and text.strip() == "```bash":
            current = Block(number, [])
        elif current is not None and text.strip() == "```":
            blocks.append(current)
            current = None
        elif current is not None and text.strip() and not text.lstrip().startswith("#"):
            current.commands.append(text.strip())
    return blocks


def command_of(line: str) -> str:
    """The command without its trailing comment (`cmd   # why`)."""
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


def script(block: Block) -> tuple[str, list[str]]:
    """The block as the script this test runs, and what its output must contain."""
    lines, expect = ["set -euo pipefail -x"], []
    for line in block.commands:
        cmd = command_of(line)
        if cmd in SKIP:
            continue
        if cmd in HELP:
            lines.append(f"{cmd} --help")
            expect.append(HELP[cmd])
        elif cmd in STDIN:
            typed, shown = STDIN[cmd]
            lines.append(f"{cmd} <<'TYPED'\n{typed}\nTYPED")
            expect.append(shown)
        else:
            lines.append(cmd)
    return "\n".join(lines), expect


def fresh_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(("TIDEMARK_", "CLICKHOUSE_", "KAFKA_", "REDIS_"))}
    env.update(
        PATH="/usr/local/bin:/usr/bin:/bin",
        HOME=os.environ.get("HOME", "/tmp"),
        LANG="C.UTF-8",
        # The checkout under test: in a git worktree, the linked .venv has another checkout installed.
        PYTHONPATH=str(ROOT),
    )
    return env


def test_the_readme_has_commands_and_every_exception_is_still_in_it():
    commands = {command_of(c) for b in readme_blocks() for c in b.commands}
    assert len(commands) > 10
    stale = (set(SKIP) | set(HELP) | set(STDIN)) - commands
    assert not stale, f"no longer in README.md, drop from this test: {stale}"


@pytest.mark.parametrize("block", readme_blocks(), ids=lambda b: f"README.md:{b.line}")
def test_readme_block_runs_in_a_fresh_shell(stack, block):
    text, expect = script(block)
    if text.count("\n") == 0:
        pytest.skip("; ".join(SKIP[command_of(c)] for c in block.commands))
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", text],
        cwd=ROOT,
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    shown = f"--- script\n{text}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 0, shown
    for wanted in expect:
        assert wanted in done.stdout, shown
