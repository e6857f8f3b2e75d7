"""Scenario orchestration only: deploy through a platform, drive load through the engine with a
protocol client, write records; figures and reports come afterwards from what was written.
"""
