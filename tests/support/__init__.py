"""Helpers the tests share, each written once: waiting on facts (``wait``, the suite's only
sleep), free ports (``ports``), process groups (``processes``), settings under other environment
variables (``settings``), Kafka records sent and read back (``broker``), ClickHouse clean-ups
(``clickhouse``), raw events written into the lake (``lake``), the stream job (``stream``), the
serving API (``api``, ``serving``), the two-version ClickHouse client (``dual``), the tiering
tests' data (``tiering``) and generated records judged by the contract (``traffic``).

Imported as ``support``: tests/ is on sys.path because tests/conftest.py lives there (pytest's
default "prepend" import mode puts the folder of each conftest.py outside a package first on
sys.path). Nothing here is collected as tests (no module is named test_*.py).
"""
