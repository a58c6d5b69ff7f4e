"""Subcommands of ``mtl-ehrnet`` owned by the evaluation package (registered in setup.py)."""
