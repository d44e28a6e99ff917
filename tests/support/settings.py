"""Settings as the library would load them under other environment variables."""

from __future__ import annotations

import os

from tidemark.config import Settings, load


def settings_with(env: dict[str, str]) -> Settings:
    """``load()`` with ``env`` laid over os.environ; os.environ is left as it was."""
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return load()
    finally:
        os.environ.clear()
        os.environ.update(saved)
