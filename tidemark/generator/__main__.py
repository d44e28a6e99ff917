"""``python -m tidemark.generator ...`` (the same as ``tidemark generate ...``)."""

from __future__ import annotations

import logging
import sys

from tidemark.config import settings
from tidemark.generator.cli import build_parser, main

if __name__ == "__main__":
    logging.basicConfig(
        level=settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    sys.exit(main(build_parser("python -m tidemark.generator").parse_args()))
