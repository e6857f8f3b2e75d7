"""Standard exports of a run directory, for the tools other teams already run.

One module per format: ``llm_d`` (the llm-d-benchmark *benchmark report*, v0.2.1, one per load
window), ``opensearch`` (KPI documents in the shape kube-burner indexes and Orion queries,
written as bulk NDJSON files or sent with ``opensearch-py``), ``mlflow_run`` (one MLflow run with
params, metrics and artifacts, through ``mlflow``'s own client). Each reads only ``run.json`` and
``summary.json`` (and the run directory's files, for artifacts); the heavy clients are optional
extras, imported only when used.
"""
