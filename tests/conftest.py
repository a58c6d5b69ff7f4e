"""Shared test settings: deterministic, small, CPU; one tiny synthetic dataset per session."""
from __future__ import annotations

import pytest
import torch

from mtl_ehrnet.data import SyntheticLayout, generate_synthetic


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SyntheticLayout:
    return generate_synthetic(tmp_path_factory.mktemp("synth"), images=12, seed=3, size=(128, 96))
