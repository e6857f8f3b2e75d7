"""The load engine: schedules, stop conditions, the asyncio engine, worker processes and sinks.

Modules: ``schedules`` (pure: user windows, arrival times, sharding), ``execute`` (one request to
one record), ``phase`` (a phase's timeline), ``closed_loop`` / ``open_loop`` (the two engines),
``shard`` (one worker's share of a phase), ``worker`` (the worker contract) and ``pool`` (the local
coordinator), ``engine`` (``run_phase``, the entry point), ``sinks``, ``breaker``.
The engine owns the :class:`~servingperf.load.client.GenerationClient` protocol that backends
implement; it never imports a backend, a platform or Rich (an import-linter contract keeps it so).
"""
