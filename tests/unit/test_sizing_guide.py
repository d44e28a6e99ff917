"""docs/production.md quotes bench/sizing.py's table: the guide must move when the measured costs do."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _table(text: str) -> list[str]:
    start = text.index("| | 1 M/day | 100 M/day | 10 B/day |")
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    return lines


def test_production_guide_quotes_the_sizing_script():
    printed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sizing.py")], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    guide = (ROOT / "docs" / "production.md").read_text()
    assert _table(guide) == _table(printed), "docs/production.md: paste the table `python bench/sizing.py` prints"


def test_sizing_reads_the_saved_bench_results():
    """The committed results are the inputs (not the fallback constants), each named as its source."""
    printed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sizing.py")], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for name in ("stream_throughput", "recompute_hour.json", "storage.json"):
        assert name in printed
