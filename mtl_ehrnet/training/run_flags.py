"""The ``--set KEY=VALUE`` flag every training command shares: one setting of the job's config tree."""
from __future__ import annotations

import argparse
from typing import Any, Tuple


def config_override(text: str) -> Tuple[str, Any]:
    """``--set KEY=VALUE``: the key (dotted: ``kd.temperature``) and VALUE read as YAML (``2``, ``[1, 0.01]``,
    ``null``, ``kl``)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)
