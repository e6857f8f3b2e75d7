"""The load engine: schedules, stop conditions, the asyncio engine and its sinks.

The engine owns the :class:`~servingperf.load.client.GenerationClient` protocol that backends
implement; it never imports a backend, a platform or Rich (an import-linter contract keeps it so).
"""
