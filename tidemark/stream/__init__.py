"""The speed layer: Kafka -> validate -> dedup -> Delta raw events + ClickHouse minute rollups.

Modules, in the order data flows through them:

* ``options``   what a run reads and how (``StreamOptions``, the job's flags, the kafka source);
* ``admission`` whether a checkpoint may start, serving or as a candidate (checked before Spark);
* ``pipeline``  the streaming query: ``build`` (read -> transform -> write) and ``run``;
* ``writer``    the per-micro-batch writer (Delta appends + rollups, exactly once);
* ``sink``      the ClickHouse side of a micro-batch and its committed-batch registry;
* ``identity``  who a stream is (checkpoint identity, row versions), which one serves, promotion;
* ``metrics``   Spark progress into ClickHouse, stream health, committed offsets;
* ``reconcile`` what the stream published against a generator manifest.

The transforms themselves are pure DataFrame functions in ``tidemark.transforms``, shared with
the batch layer.
"""
