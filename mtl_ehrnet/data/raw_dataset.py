"""The base of every dataset: it loads :class:`~mtl_ehrnet.data.sample.RawSample` s and hands each to a transform."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch.utils.data import Dataset

from mtl_ehrnet.data.sample import RawSample
from mtl_ehrnet.data.transforms import TestTransform


class RawDataset(Dataset):
    """Base of the datasets: subclasses implement ``load``; indexing applies ``transform``.

    Args:
        transform: turns a :class:`RawSample` into the training sample dict; ``None`` uses the
            deterministic ``TestTransform(512)``.
    """

    def __init__(self, transform: Optional[Callable[[RawSample], Dict[str, torch.Tensor]]] = None) -> None:
        self.transform = TestTransform(512) if transform is None else transform

    def load(self, index: int) -> RawSample:
        """The untransformed image and labels of sample ``index``."""
        raise NotImplementedError

    def fingerprint(self) -> Dict[str, str]:
        """What identifies the samples, for stores keyed by sample index: their number, and in subclasses
        digests of the file list and of the labels' contents (computed once per dataset object)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = {"kind": type(self).__name__, "samples": str(len(self)), **self._describe()}
        return dict(self._fingerprint)

    def _describe(self) -> Dict[str, str]:
        """Digests of the file list and labels (see :mod:`mtl_ehrnet.data.fingerprint`)."""
        return {}

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return self.transform(self.load(index))
