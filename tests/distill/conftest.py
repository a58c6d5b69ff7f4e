"""Stand-in teachers shared by the distillation tests."""
import pytest
import torch
import torch.nn.functional as F


class PooledImage(torch.nn.Module):
    """An exactly equivariant stand-in teacher: its maps are local averages of the image, so a map
    computed on the letterboxed image and warped must equal the map computed on the augmented crop."""

    tasks = ("pose", "seg")

    def forward(self, images: torch.Tensor, **_: bool) -> dict:
        gray = images.mean(dim=1, keepdim=True)
        lr = F.avg_pool2d(gray, 4)
        # Class scores differ by colour channel, so the argmax class follows the image.
        seg = F.avg_pool2d(images, 4).repeat(1, 7, 1, 1)[:, :19] * torch.linspace(1, 2, 19)[:, None, None]
        return {"heatmaps": F.avg_pool2d(gray, 2).expand(-1, 17, -1, -1), "heatmaps_lr": lr.expand(-1, 17, -1, -1),
                "tags": lr.expand(-1, 17, -1, -1), "seg": seg}


@pytest.fixture
def pooled_image() -> PooledImage:
    return PooledImage()
