"""The embedded stack (`services`), its processes (`process`), Airflow (`airflow`), and the
processes run on top of it: the stream job and the API (`workloads`)."""
