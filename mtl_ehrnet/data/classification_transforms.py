"""Augmentation for classifier pretraining (thesis 4.1) and the centre-crop test transform.

Thesis 4.1: "random rotation, random scale, and random aspect ratio is used to crop the input images";
colour jitter of brightness, contrast, saturation and hue plus PCA (AlexNet) lighting noise; per-channel
mean/std normalisation. The thesis gives no magnitudes: the defaults below are the usual ImageNet ones
(Inception crop 8-100 % of the area at aspect 3/4-4/3, jitter 0.4, hue 0.1, lighting std 0.1), and a
±10° rotation (our choice).

Both transforms map a uint8 (H, W, 3) RGB array to a float32 (3, S, S) tensor and draw their randomness
from torch's global RNG, which the training engine seeds per sample (resumable, worker-independent).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Eigen-decomposition of ImageNet's RGB pixel covariance (Krizhevsky et al. 2012), for lighting noise.
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
# Test-time resize: the short side to size / 0.875, then a size x size centre crop (the ImageNet rule).
CROP_FRACTION = 0.875


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if not image.flags.writeable or not image.flags.c_contiguous:  # PIL-backed arrays are read-only
        image = np.array(image, order="C")
    return torch.from_numpy(image).permute(2, 0, 1)


class PcaLighting:
    """AlexNet lighting noise: adds ``eigvec @ (alpha * eigval)``, alpha ~ N(0, std), to every pixel.

    Shape: (3, H, W) float in [0, 1] -> same.
    """

    def __init__(self, std: float = 0.1) -> None:
        self.std = std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.std <= 0:
            return image
        alpha = torch.randn(3) * self.std
        return image + (PCA_EIGVEC @ (alpha * PCA_EIGVAL)).view(3, 1, 1)


class ClassificationTrainTransform:
    """Rotation, random-resized crop, horizontal flip, colour jitter, PCA lighting, normalisation.

    Args:
        size: output side S.
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio.
        rotation: maximum rotation in degrees (0: none).
        jitter: brightness, contrast and saturation jitter strength.
        hue: hue jitter (<= 0.5).
        lighting: PCA lighting noise std (0: none).

    Shape: uint8 (H, W, 3) -> float32 (3, S, S), normalised with the ImageNet mean and std.
    """

    def __init__(self, size: int, scale: Tuple[float, float] = (0.08, 1.0), ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 rotation: float = 10.0, jitter: float = 0.4, hue: float = 0.1, lighting: float = 0.1) -> None:
        steps = [v2.RandomRotation(rotation)] if rotation > 0 else []
        steps += [
            v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(jitter, jitter, jitter, hue),
            v2.ToDtype(torch.float32, scale=True),
        ]
        self.geometry_and_colour = v2.Compose(steps)
        self.lighting = PcaLighting(lighting)
        self.normalize = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.size = size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        out = self.lighting(self.geometry_and_colour(_to_tensor(image)))
        return self.normalize(out)


class ClassificationTestTransform:
    """Resize the short side to ``size / 0.875``, centre-crop ``size``, normalise.

    Shape: uint8 (H, W, 3) -> float32 (3, S, S).
    """

    def __init__(self, size: int, crop_fraction: float = CROP_FRACTION) -> None:
        self.steps = v2.Compose([
            v2.Resize(int(round(size / crop_fraction)), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])
        self.size = size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.steps(_to_tensor(image))
