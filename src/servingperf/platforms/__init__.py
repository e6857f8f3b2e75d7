"""Platforms deploy model instances and tell when they are ready: local server processes, static
endpoints, KServe on Kubernetes. They know nothing of load (an import-linter contract keeps it so).
"""
