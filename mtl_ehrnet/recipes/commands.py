"""``mtl-ehrnet recipes``: the shipped recipes, or one of them as YAML to copy and edit."""
from __future__ import annotations

import argparse

from mtl_ehrnet.recipes import recipe_names, recipe_path, recipe_summary


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "recipes",
        help="list the shipped recipes, or print one (mtl-ehrnet recipes quickstart > mine.yaml)",
        description="Without a name: every shipped recipe with what it trains and its file. With one: that "
        "recipe's YAML, to copy, edit and pass back (quickstart --recipe FILE, train-teacher/distill/train-backbone "
        "--config FILE); those options also take a shipped recipe's name.",
    )
    p.add_argument("name", nargs="?", help="the recipe to print")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        print(recipe_path(args.name).read_text(encoding="utf-8"), end="")
        return 0
    names = recipe_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {recipe_summary(name)}\n{'':<{width}}  {recipe_path(name)}")
    return 0
