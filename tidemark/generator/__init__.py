"""Deterministic traffic generator: page views with late events, duplicates and malformed records.

``tidemark generate`` (``cli``) sends them to Kafka (``produce``) and writes a
manifest (``manifest``) of exactly what was sent; ``traffic`` is the pure,
seeded event and fault model.
"""

from tidemark.generator.manifest import Manifest, read_manifest, write_manifest
from tidemark.generator.options import MALFORMED_KINDS, TrafficOptions
from tidemark.generator.traffic import Record, TrafficGenerator, generate

__all__ = [
    "MALFORMED_KINDS",
    "Manifest",
    "Record",
    "TrafficGenerator",
    "TrafficOptions",
    "generate",
    "read_manifest",
    "write_manifest",
]
