"""report: the run report (one offline HTML page) and its charts (Vega-Lite specs, PNG files).

Entry points: :func:`servingperf.report.build.build_report` writes ``report.html`` and
``charts/*.png`` into a run directory; :func:`servingperf.report.charts.chart_specs` returns the
chart specs alone (pure). This layer reads analysis, results and model; never load, protocols,
platforms, emulator or scenarios.
"""
