"""Validation shared by the plain-data configs (model configs, run configs)."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping


def reject_unknown_keys(cls: type, data: Mapping[str, Any], what: str) -> None:
    """Raises a ValueError naming the keys of ``data`` that are not fields of dataclass ``cls``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")
