"""Reading a published checkpoint file: safe load, unwrapping and prefix stripping."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Union

import torch

PathLike = Union[str, Path]
# Wrappers a state dict is commonly stored under (training scripts save {"state_dict": ..., "epoch": ...}).
WRAPPERS = ("state_dict", "model_state_dict", "model")
# Prefixes left by training wrappers: DistributedDataParallel's "module.", HRNet-seg's FullModel "model.".
PREFIXES = ("module.", "model.")
# Keys under these prefixes belong to a training wrapper, not to the network (HRNet-seg's loss weights).
WRAPPER_ONLY = {"loss.": "a buffer of the training loss (HRNet-seg's FullModel), not part of the network"}


class SourceState(NamedTuple):
    """A source file's tensors, keyed as the reference network names them.

    Attributes:
        tensors: the network's state dict, wrappers and prefixes removed.
        wrapper_keys: keys that belong to the training wrapper, with why they are not needed.
        notes: what was unwrapped or stripped, for the report.
        raw: the loaded object (our own checkpoints keep their ``config`` there).
    """

    tensors: Dict[str, torch.Tensor]
    wrapper_keys: Dict[str, str]
    notes: List[str]
    raw: Any


def load_file(path: PathLike) -> Any:
    """``torch.load(weights_only=True)``: a pickle that would run code is refused, not executed.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file cannot be read as plain tensors and containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused (code objects) or a corrupt file
        raise ValueError(
            f"refusing to load {path}: it is not a plain tensor checkpoint (a pickle that would run code on load, "
            f"or a corrupt file): {err}"
        ) from err


def read_source(data: Any, where: str) -> SourceState:
    """Finds the state dict inside a loaded checkpoint and strips wrapper prefixes.

    Args:
        data: what :func:`load_file` returned, or a state dict.
        where: the file name, for messages.
    Raises:
        ValueError: no dict of tensors was found.
    """
    notes: List[str] = []
    state: Any = data
    for key in WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping) and not _is_tensor_dict(state):
            state = state[key]
            notes.append(f"state dict read from the file's {key!r} entry")
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{where}: expected a state dict of tensors, got {type(state).__name__}")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    others = [k for k in state if k not in tensors]
    if others:
        raise ValueError(f"{where}: expected a state dict of tensors; entries {others[:5]} are not tensors")
    wrapper_keys: Dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            network = [k for k in tensors if not _wrapper_reason(k)]
            if network and all(k.startswith(prefix) for k in network):
                tensors = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in tensors.items()}
                notes.append(f"prefix {prefix!r} stripped from every key")
                changed = True
    for key in list(tensors):
        reason = _wrapper_reason(key)
        if reason:
            wrapper_keys[key] = reason
            del tensors[key]
    return SourceState(tensors, wrapper_keys, notes, data)


def _is_tensor_dict(state: Mapping) -> bool:
    return bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())


def _wrapper_reason(key: str) -> str:
    return next((reason for prefix, reason in WRAPPER_ONLY.items() if key.startswith(prefix)), "")
