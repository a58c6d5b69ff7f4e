"""INT8 post-training quantisation of an exported graph with ONNX Runtime (static, QDQ, per channel).

What pays on a VNNI CPU (docs/results.md, "Inference paths", has the figures): the graph
optimised and shape-inferred first (``quant_pre_process``), then QDQ with per-channel int8 weights and
uint8 activations on convolutions, additions, products, resizes and concatenations, so that ONNX Runtime
fuses whole int8 chains, but depthwise convolutions left in fp32 (its int8 depthwise kernel is slower than
the fp32 one). Quantising every operator was slower than fp32.

Static quantisation needs calibration inputs: preprocess real images with
:func:`calibration_batches` (resize short side, pad to 32, ImageNet-normalise, as ``Predictor`` does)
or, for timing only, random ones. Dynamic quantisation (``ConvInteger``) is slower than fp32 on the CPU, so
it is not offered.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from mtl_ehrnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

PathLike = Union[str, Path]
QUANTISED_OPS = ["Conv", "MatMul", "Add", "Mul", "Resize", "Concat"]


def calibration_batches(images: Iterable[np.ndarray], input_size: Tuple[int, int]) -> Iterator[np.ndarray]:
    """Calibration inputs (1, 3, H, W) float32 from uint8 RGB images (any size): each is resized so it
    covers ``input_size`` along its short side, then cropped/padded (black) to exactly ``input_size``
    and ImageNet-normalised."""
    mean = torch.as_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD).view(3, 1, 1)
    height, width = input_size
    for image in images:
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255
        factor = min(height, width) / min(tensor.shape[-2:])
        size = (max(1, round(tensor.shape[-2] * factor)), max(1, round(tensor.shape[-1] * factor)))
        tensor = F.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False, antialias=factor < 1)[0]
        canvas = torch.zeros(3, height, width)
        h, w = min(height, size[0]), min(width, size[1])
        canvas[:, :h, :w] = tensor[:, :h, :w]
        yield ((canvas - mean) / std)[None].numpy()


def random_batches(input_size: Tuple[int, int], count: int, seed: int = 0) -> List[np.ndarray]:
    """``count`` standard-normal inputs (1, 3, H, W): calibration good for timing only, not accuracy."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, *input_size), dtype=np.float32) for _ in range(count)]


def quantize_int8(
    fp32_path: PathLike, int8_path: PathLike, calibration: Sequence[np.ndarray], *, input_name: str = "images"
) -> Dict[str, float]:
    """Writes an INT8 copy of ``fp32_path`` to ``int8_path``: QDQ format, int8 per-channel weights,
    uint8 activations with ranges calibrated (min-max) on ``calibration`` inputs.

    Args:
        fp32_path: the exported fp32 graph (fixed input shape).
        int8_path: where to write the quantised graph.
        calibration: inputs (1, 3, H, W) float32 of the graph's shape.
        input_name: the graph's input.

    Returns:
        ``{"seconds", "fp32_bytes", "int8_bytes"}``.

    Raises:
        ValueError: no calibration inputs.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = list(calibration)
    if not batches:
        raise ValueError("INT8 calibration needs at least one input")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter({input_name: b} for b in batches)

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            return next(self._items, None)

    Path(int8_path).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # The quantiser logs a warning per convolution whose bias comes out of BN folding at run time; they
    # say nothing a user can act on, so they are held back while it runs.
    logging.disable(logging.WARNING)
    try:
        prepared = Path(int8_path).with_suffix(".pre.onnx")
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        depthwise = [n.name for n in graph.graph.node
                     if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
        quantize_static(str(prepared), str(int8_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTISED_OPS, nodes_to_exclude=depthwise)
        prepared.unlink()
    finally:
        logging.disable(logging.NOTSET)
    return {"seconds": time.perf_counter() - start, "fp32_bytes": Path(fp32_path).stat().st_size,
            "int8_bytes": Path(int8_path).stat().st_size}
