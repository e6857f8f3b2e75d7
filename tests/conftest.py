"""Fixtures shared across test folders: the session's one real vLLM engine."""

from tests.support.vllm_engine import vllm_engine

__all__ = ["vllm_engine"]
