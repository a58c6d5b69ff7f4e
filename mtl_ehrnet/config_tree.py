"""A job's configuration as a tree of frozen dataclasses, read from and written to YAML.

A command layers three sources, each over the one before: the recipe's defaults (the dataclasses' own), the
``--config`` YAML, then only the flags the user typed (``--set section.key=value`` reaches any leaf). The result
is validated as one tree (an unknown key is refused with the known ones at that level) and written to
``OUT/config.yaml``, which ``--config`` reads back to train the same run again.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Type, TypeVar, Union

import yaml

from mtl_ehrnet.recipes import config_file

T = TypeVar("T")
PathLike = Union[str, Path]


def from_tree(cls: Type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Builds dataclass ``cls`` from a nested mapping: sub-mappings fill nested dataclass fields, lists become
    tuples where the field is a tuple; keys a level lacks keep their defaults.

    Raises:
        ValueError: naming ``where`` and the path of a key that is not a field, with the known ones.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}; known: {', '.join(known)}")
    values = {}
    for name, value in data.items():
        kind = _strip_optional(hints[name])
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = from_tree(kind, value, f"{where}.{name}")
        elif _is_tuple(kind) and isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def to_tree(obj: Any) -> Any:
    """A dataclass tree as plain YAML-safe data (tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_tree(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_tree(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_tree(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """``over`` laid over ``base``: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted(key: str, value: Any) -> Dict[str, Any]:
    """``("kd.temperature", 2)`` -> ``{"kd": {"temperature": 2}}``."""
    for part in reversed(key.split(".")):
        if not part:
            raise ValueError(f"expected a key such as kd.temperature, got {key!r}")
        value = {part: value}
    return value


def layered(cls: Type[T], config: Optional[PathLike], flags: Mapping[str, Any],
            changes: Iterable[Tuple[str, Any]] = (), flat: Optional[Tuple[str, Iterable[str]]] = None) -> T:
    """``cls`` from the layers of a command: its defaults, the YAML file ``config`` (when given), the ``flags``
    the user typed (``{dotted key: value}``, None values skipped), then ``changes`` (``--set`` pairs).

    Args:
        flat: ``(section, its keys)``: a YAML whose keys are all among them (a flat file of one section, as older
            run configs were) is read as that section.
    """
    tree = read_tree(config) if config else {}
    sections = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if flat is not None and set(tree) & set(flat[1]) and not set(tree) & sections:
        tree = {flat[0]: tree}
    for key, value in flags.items():
        if value is not None:
            tree = merge(tree, dotted(key, value))
    for key, value in changes:
        tree = merge(tree, dotted(key, value))
    where = str(config) if config else cls.__name__
    try:
        return from_tree(cls, tree, where)
    except ValueError as error:  # a section's own check (the run's fields...) names the file too
        raise ValueError(str(error) if str(error).startswith(where) else f"{where}: {error}") from None


def read_tree(path: PathLike) -> Dict[str, Any]:
    """A YAML config file, or the shipped recipe of that name, as a mapping (``yaml.safe_load``: no code runs)."""
    path = config_file(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config is a mapping of settings, got {type(data).__name__}")
    return data


def write_tree(path: PathLike, obj: Any) -> Path:
    """Writes ``obj`` (a dataclass tree or plain data) as YAML, keys in field order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_tree(obj), sort_keys=False), encoding="utf-8")
    return path


def _strip_optional(kind: Any) -> Any:
    if typing.get_origin(kind) is Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _is_tuple(kind: Any) -> bool:
    return kind is tuple or typing.get_origin(kind) is tuple
