"""One way for the commands to get a model: a checkpoint path, or a registered name (random weights)."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import nn


class LoadedModel(NamedTuple):
    """A model, where it came from, and whether its weights are random (built from a name)."""

    model: nn.Module
    source: str
    random_weights: bool


def load_model_or_name(spec: Union[str, Path], device: Union[str, torch.device] = "cpu", *, role: str = "model",
                       needs: Sequence[str] = ()) -> LoadedModel:
    """``mtl_ehrnet.load_model`` for a command: a checkpoint of any kind, a published file, or a registered name
    (random weights), checked for the heads the command needs.

    Args:
        spec: a checkpoint file (ours or published), or a name from ``mtl_ehrnet.list_models`` / any
            ``{pose,seg,mtl}_h<phi>``.
        device: where to put the model (eval mode).
        role: how the model is called in error messages (``"--pose-model"``...).
        needs: tasks the model must have (``("pose",)``...).

    Raises:
        FileNotFoundError: ``spec`` looks like a path (has a suffix or a folder) and no file is there.
        ValueError: neither a checkpoint nor a model name, or a model without a needed head; the message
            names the file and what was expected.
    """
    from mtl_ehrnet import load_model

    text = str(spec)
    try:
        model = load_model(text, map_location=device)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{role}: {err}") from err
    except ValueError as err:
        if Path(text).is_file():
            raise ValueError(f"{role}: {err}") from err
        raise ValueError(f"{role}: {text!r} is neither a checkpoint file nor a model name ({err})") from err
    random_weights = not Path(text).is_file()
    tasks = tuple(getattr(model, "tasks", ()))
    missing = [t for t in needs if t not in tasks]
    if missing:
        head = " and ".join({"pose": "a pose head", "seg": "a segmentation head"}[t] for t in missing)
        raise ValueError(f"{role}: {text} holds a model with tasks {'+'.join(tasks)}; expected one with {head}")
    return LoadedModel(model.to(device).eval(), text, random_weights)


def describe_source(loaded: LoadedModel, name: Optional[str] = None) -> str:
    """One line for the command output, saying when the weights are random."""
    label = name or loaded.source
    return (f"{label}: random weights (built from the name; pass a checkpoint for trained ones)"
            if loaded.random_weights else f"{label}: {loaded.source}")
