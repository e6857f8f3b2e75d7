"""servingperf: continuous performance and scale validation of model-serving stacks.

The package is layered as DESIGN.md section 2 draws it (an import-linter contract keeps it so):
cli -> scenarios -> (platforms, load, protocols, datasets) -> results -> model; analysis reads
results and model; report reads analysis; the emulator imports nothing of the client side.
"""

__version__ = "0.1.0"
