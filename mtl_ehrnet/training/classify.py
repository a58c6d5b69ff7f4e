"""Classification loss and top-k accuracy, for classifier pretraining on the shared engine."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm


class ClassificationLoss(nn.Module):
    """Cross-entropy on ``outputs["logits"]`` (B, C) against ``batch["label"]`` (B,) int64.

    Returns ``{"ce": scalar}`` (the engine sums and logs the terms by name).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(outputs["logits"].float(), batch["label"], label_smoothing=self.label_smoothing)}


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, int]:
    """How many of the B samples have their label among the k highest logits, for each k.

    Args:
        logits: (B, C).
        labels: (B,) int64.
        ks: k values; a k above C counts as C (every label is then correct).
    """
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (B, kmax)
    hits = top.eq(labels[:, None])
    return {k: int(hits[:, : min(k, logits.shape[1])].any(dim=1).sum()) for k in ks}


@torch.inference_mode()
def evaluate_classifier(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    workers: int = 0,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = False,
) -> Dict[str, float]:
    """Top-1 and top-5 accuracy (fractions in [0, 1]), mean cross-entropy ``ce`` and the number of
    ``samples`` of ``model`` on ``dataset``.

    Args:
        model: returns ``{"logits": (B, C)}``; evaluated in eval mode (its mode is restored).
        dataset: items ``{"image": (3, S, S), "label": ()}``.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    correct = {1: 0, 5: 0}
    loss_sum, count = 0.0, 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            images, labels = batch["image"].to(device), batch["label"].to(device)
            logits = model(images)["logits"].float()
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            for k, n in topk_correct(logits, labels, (1, 5)).items():
                correct[k] += n
            count += len(labels)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_classifier: the dataset is empty")
    return {"top1": correct[1] / count, "top5": correct[5] / count, "ce": loss_sum / count, "samples": float(count)}
