"""Pure data shared by every layer: user specs, request and deployment records, metric definitions.

Nothing here does I/O. Hot-path types are slots dataclasses; user input is pydantic ``*Spec`` models
that reject unknown keys.
"""
