"""Wire-protocol clients: one module per protocol, each turning a request into token events.

They implement :class:`servingperf.load.client.GenerationClient` structurally and know nothing of
scenarios, the engine or platforms.
"""
