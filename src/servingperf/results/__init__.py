"""What a run leaves behind and what outlives it: the run directory (``run.json``, request and
deployment records as Parquet, ``summary.json``) and the results store (SQLite or PostgreSQL).
"""
