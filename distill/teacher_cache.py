"""Teacher-output cache: frozen teachers run once per image, before augmentation; fp16 on disk.

``TeacherCache.build`` letterboxes every image of a dataset to the cache's input size, runs the
teachers and writes one file per image (``<root>/<tag>/<index>.pt``: the teachers' maps in fp16 and the
letterbox affine). ``CachedTeacherDataset`` adds those maps to each (augmented) training sample; the
distillation objective warps them into the sample's frame with :func:`distill.replay.replay_affine`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from mtl_ehrnet.data.sample import RawDataset
from mtl_ehrnet.data.transforms import TestTransform

CACHE_KEYS = ("heatmaps", "heatmaps_lr", "tags", "seg")
PREFIX = "teacher_"


class TeacherCache:
    """Cached teacher outputs under ``root``.

    Args:
        root: cache directory.
        teachers: frozen teachers whose outputs are cached (their output dicts are merged).
        input_size: letterbox size the teachers run at; a multiple of 32.
        identity: what the cached outputs depend on (teacher checkpoints...); a cache built for another
            identity is refused instead of silently reused.
    """

    def __init__(self, root: Union[str, Path], teachers: Dict[str, nn.Module], input_size: int, identity: Dict[str, str]) -> None:
        if input_size % 32:
            raise ValueError(f"cache input size must be a multiple of 32, got {input_size}")
        self.root = Path(root)
        self.teachers = teachers
        self.input_size = input_size
        self.identity = {**identity, "input_size": str(input_size)}
        manifest = self.root / "manifest.json"
        if manifest.is_file():
            stored = json.loads(manifest.read_text())
            if stored != self.identity:
                raise ValueError(f"teacher cache {self.root} was built for {stored}, not {self.identity}; use another --cache DIR")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            manifest.write_text(json.dumps(self.identity, indent=2))

    def path(self, tag: str, index: int) -> Path:
        return self.root / tag / f"{index}.pt"

    @torch.inference_mode()
    def build(self, dataset: RawDataset, tag: str, device: Union[str, torch.device] = "cpu", batch_size: int = 8, progress: bool = True) -> int:
        """Computes the missing entries of ``dataset`` (so an interrupted build resumes); returns how many."""
        transform = TestTransform(self.input_size)
        todo = [i for i in range(len(dataset)) if not self.path(tag, i).is_file()]
        (self.root / tag).mkdir(parents=True, exist_ok=True)
        for start in tqdm(range(0, len(todo), batch_size), desc=f"teacher cache {tag}", disable=not progress):
            chunk = todo[start:start + batch_size]
            samples = [transform(dataset.load(i)) for i in chunk]
            images = torch.stack([s["image"] for s in samples]).to(device)
            outputs: Dict[str, torch.Tensor] = {}
            for teacher in self.teachers.values():
                outputs.update(teacher(images))
            for row, (index, sample) in enumerate(zip(chunk, samples)):
                entry = {k: v[row].to("cpu", torch.float16).clone() for k, v in outputs.items() if k in CACHE_KEYS}
                entry["affine"] = sample["affine"].float()
                tmp = self.path(tag, index).with_suffix(".tmp")
                torch.save(entry, tmp)
                tmp.replace(self.path(tag, index))
        return len(todo)

    def load(self, tag: str, index: int) -> Dict[str, torch.Tensor]:
        path = self.path(tag, index)
        if not path.is_file():
            raise FileNotFoundError(f"teacher cache entry missing: {path} (build the cache first)")
        return torch.load(path, map_location="cpu", weights_only=True)


class CachedTeacherDataset(Dataset):
    """A training dataset whose samples also carry the cached teacher maps as ``teacher_<key>`` and the
    letterbox affine as ``teacher_affine``."""

    def __init__(self, dataset: RawDataset, cache: TeacherCache, tag: str) -> None:
        self.dataset, self.cache, self.tag = dataset, cache, tag

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        sample = self.dataset[index]
        for key, value in self.cache.load(self.tag, index).items():
            sample[PREFIX + key] = value
        return sample


def cached_outputs(batch: Dict[str, torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
    """The cached teacher entries of a collated batch, or None when the batch carries none."""
    found = {k[len(PREFIX):]: v for k, v in batch.items() if k.startswith(PREFIX)}
    return found or None
