"""The batch layer: hourly recompute over Delta, quality gates, atomic republish."""
