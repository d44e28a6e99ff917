"""Anomaly detection on the rollups: a seasonal baseline per tenant, metric and top dimension value
(scoring.py, pure), read from and written to ClickHouse (store.py), run over an explicit range
(detect.py: ``tidemark anomalies detect``, and the hourly DAG after each publish)."""
