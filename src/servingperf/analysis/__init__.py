"""Pure analysis: figures from stored records (metrics, summaries), verdicts (saturation, gate)
and change points. No I/O beyond what callers pass in; no sockets, sleeps or clocks.
"""
