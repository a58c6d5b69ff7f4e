"""The flags every training command shares: ``--config`` and ``--set KEY=VALUE``, the settings of the job's config
tree."""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, Mapping, Tuple, Type, TypeVar

T = TypeVar("T")


def config_override(text: str) -> Tuple[str, Any]:
    """``--set KEY=VALUE``: the key (dotted: ``kd.temperature``) and VALUE read as YAML (``2``, ``[1, 0.01]``,
    ``null``, ``kl``)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def add_config_flags(parser: argparse.ArgumentParser, example: str, flat_run: bool = False) -> None:
    """``--config`` (a settings file or a shipped recipe's name) and ``--set KEY=VALUE`` (``example``: two of the
    job's keys, for the help)."""
    flat = ", a flat file of RunConfig fields" if flat_run else ""
    parser.add_argument("--config", metavar="YAML",
                        help=f"settings file (a run's OUT/config.yaml, your own{flat}) or a shipped recipe's name "
                             "(mtl-ehrnet recipes)")
    parser.add_argument("--set", action="append", default=[], type=config_override, metavar="KEY=VALUE",
                        dest="changes", help=f"one setting (VALUE read as YAML), e.g. {example}; repeatable")


def config_from_args(cls: Type[T], args: argparse.Namespace, flag_keys: Mapping[str, str], flat_run: bool = False) -> T:
    """``cls`` layered from its defaults, ``args.config``, the flags typed (``flag_keys``: argparse name -> dotted
    config key) and ``args.changes`` (``--set``); with ``flat_run`` a flat YAML of RunConfig fields is read as the
    ``run`` section."""
    from mtl_ehrnet.config_tree import layered
    from mtl_ehrnet.training.run_config import RunConfig

    flags = {key: getattr(args, name, None) for name, key in flag_keys.items()}
    flat = ("run", [f.name for f in fields(RunConfig)]) if flat_run else None
    return layered(cls, args.config, flags, args.changes, flat=flat)
