"""Peer-compatible views: the headline figures of other load-test tools, recomputed from the same
raw records under each tool's documented definition.

Terms. A *peer* is another tool (vLLM ``bench serve``, GuideLLM, inference-perf, AIPerf). Its
*view* of one phase window is a list of :class:`~servingperf.analysis.peers.view.PeerFigure`,
each with the peer's own name and unit and the servingperf figure it corresponds to, plus a table
of *divergences*: where the peer's definition differs from ours, why, and whether a difference
needs data servingperf does not record (a *gap*). Each view cites the source file and commit of
the definitions it follows. Views are pure functions of the records and the phase window.
"""
