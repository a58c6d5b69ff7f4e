"""Recipes shipped with the library as YAML files: what a run trains, for how many steps, with which settings.

``mtl-ehrnet recipes`` lists them with their first line; ``recipe_path(name)`` is the file to copy and edit, and
a command's ``--config`` (``--recipe`` for the quick start) takes the file or the name alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

RECIPES = Path(__file__).resolve().parent


def recipe_names() -> List[str]:
    """Every shipped recipe's name (its file name without ``.yaml``)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The shipped recipe ``name``'s file.

    Raises:
        ValueError: naming the shipped recipes when there is none called ``name``.
    """
    path = RECIPES / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no shipped recipe {name!r}; recipes: {', '.join(recipe_names())}")
    return path


def config_file(value: "str | Path") -> Path:
    """The file a ``--config`` / ``--recipe`` value names: an existing path, else the shipped recipe of that name.

    Raises:
        FileNotFoundError: naming the value and the shipped recipes, when it is neither.
    """
    path = Path(value)
    if path.is_file():
        return path
    shipped = RECIPES / f"{value}.yaml"
    if "/" not in str(value) and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"config {value} is neither a file nor a shipped recipe ({', '.join(recipe_names())})")


def recipe_summary(name: str) -> str:
    """The recipe's first comment line (what it trains)."""
    first = recipe_path(name).read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip()
