"""Kafka's default placement of a keyed record, so ``--output`` files and the broker agree on
every record's partition (the producer is always given the partition explicitly)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS: dict[int, Callable[[bytes], tuple[Any, ...]]] = {}  # word count -> struct unpacker


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), equal to kafka-python's ``murmur2`` (unsigned) and the Java client's.

    A leaner pure-Python version of ``kafka.partitioner.default.murmur2`` (about 2x faster); it runs
    once per user, tens of thousands of times per run.
    """
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    words = _WORDS.get(length >> 2)
    if words is None:
        words = _WORDS[length >> 2] = struct.Struct(f"<{length >> 2}I").unpack_from
    for k in words(data):
        k = (k * _M) & _MASK
        h = ((h * _M) ^ ((k ^ (k >> 24)) * _M)) & _MASK
    extra = length & 3
    if extra:
        end = length & ~3
        if extra == 3:
            h ^= data[end + 2] << 16
        if extra >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def kafka_partition(key: bytes, partitions: int) -> int:
    """The Java / kafka-python / librdkafka ``murmur2_random`` placement of a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
