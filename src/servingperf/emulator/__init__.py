"""The embedded model server: a continuous-batching latency model behind OpenAI-compatible HTTP
(and, later, gRPC) front ends. It imports nothing of the client side.
"""
