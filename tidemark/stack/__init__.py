"""The embedded stack (`services`), its processes (`process`), Airflow (`airflow`) and Spark jobs (`jobs`)."""
