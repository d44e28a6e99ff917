"""``python -m tidemark.generator ...`` (the same as ``tidemark generate ...``)."""

from __future__ import annotations

import sys

from tidemark import logs
from tidemark.config import settings
from tidemark.generator.cli import build_parser, main

if __name__ == "__main__":
    logs.configure(settings())  # the same log format as every Tidemark process (extras included)
    sys.exit(main(build_parser("python -m tidemark.generator").parse_args()))
