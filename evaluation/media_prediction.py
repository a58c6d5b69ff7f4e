"""Pose + segmentation over images or a video: overlays, COCO-format poses, per-class pixel counts, FPS.

One joint model runs both tasks in one forward pass; two separate models (a pose one and a seg one) run
one after the other on the same frames, so the same run shows what the joint model saves.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from evaluation.coco_eval import to_coco_results, write_coco_results
from mtl_ehrnet.data.cityscapes import CLASS_NAMES
from mtl_ehrnet.inference.draw import draw_poses, overlay_segmentation
from mtl_ehrnet.inference.predictor import Prediction, Predictor
from mtl_ehrnet.inference.sources import Frame, FrameSource
from mtl_ehrnet.inference.video import VideoWriter

PathLike = Union[str, Path]


@dataclass
class MediaRun:
    """What :func:`predict_media` did.

    ``model_seconds`` is the time spent in the predictors (resize, forward, grouping, class map): the
    FPS a deployment gets; ``wall_seconds`` adds decoding, drawing and writing.
    """

    frames: int = 0
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    outputs: List[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.model_seconds if self.model_seconds else 0.0

    @property
    def wall_fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds else 0.0


def class_pixel_counts(class_map: np.ndarray, names: Sequence[str] = CLASS_NAMES) -> Dict[str, int]:
    """Pixels per class of an (H, W) class map, by name (ids without a name are called by their number)."""
    ids, counts = np.unique(np.asarray(class_map), return_counts=True)
    return {(names[i] if 0 <= i < len(names) else str(int(i))): int(c) for i, c in zip(ids, counts)}


def merge(predictions: Sequence[Prediction]) -> Prediction:
    """One result from the results of several models on the same image (first pose / seg found wins)."""
    poses = next((p for p in predictions if p.poses is not None), None)
    seg = next((p.seg for p in predictions if p.seg is not None), None)
    return Prediction(poses.poses if poses else None, poses.scores if poses else None, seg)


def render(image: np.ndarray, prediction: Prediction, min_score: float = 0.0) -> np.ndarray:
    """The image with the segmentation overlay (when there is one) and the skeletons on top."""
    picture = overlay_segmentation(image, prediction.seg) if prediction.seg is not None else image
    if prediction.poses is not None:
        picture = draw_poses(picture, prediction.poses, prediction.scores, min_score=min_score)
    return picture


def predict_media(
    predictors: Sequence[Predictor],
    source: FrameSource,
    out_dir: PathLike,
    *,
    batch_size: int = 4,
    draw: bool = True,
    min_score: float = 0.0,
    progress: bool = True,
) -> MediaRun:
    """Runs ``predictors`` on every frame of ``source`` and writes the results to ``out_dir``.

    Writes ``poses.json`` (COCO keypoint results: ``image_id`` = frame index, ``category_id`` 1, 51
    keypoint values in image pixels, ``score``), ``pixel_counts.json`` (per image: file name and pixels
    per Cityscapes class) and, with ``draw``, ``<name>.png`` per image or ``<video stem>.mp4``.

    Args:
        predictors: one joint predictor, or a pose one and a seg one.
        source: the frames.
        out_dir: output folder (created).
        batch_size: frames per predictor call.
        draw: write the overlays.
        min_score: poses below this score are not drawn (all are written to the JSON).
        progress: tqdm bar.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = MediaRun()
    poses: List[dict] = []
    counts: List[Dict[str, Any]] = []
    writer: Optional[VideoWriter] = None
    if draw and source.kind == "video":
        writer = VideoWriter(out / f"{source.path.stem}.mp4", source.fps or 25.0)
    start = time.perf_counter()
    batch: List[Frame] = []

    def flush() -> None:
        nonlocal writer
        if not batch:
            return
        images = [f.image for f in batch]
        began = time.perf_counter()
        per_model = [p(images) for p in predictors]
        run.model_seconds += time.perf_counter() - began
        for i, frame in enumerate(batch):
            result = merge([results[i] for results in per_model])
            if result.poses is not None:
                poses.extend(to_coco_results(frame.index, result.poses, result.scores))
            entry: Dict[str, Any] = {"image_id": frame.index, "file_name": frame.name, "height": frame.image.shape[0],
                                     "width": frame.image.shape[1]}
            if result.seg is not None:
                entry["pixel_counts"] = class_pixel_counts(result.seg)
            counts.append(entry)
            if draw:
                picture = render(frame.image, result, min_score)
                if writer is not None:
                    writer.write(picture)
                else:
                    target = out / f"{Path(frame.name).stem}.png"
                    _write_png(target, picture)
                    run.outputs.append(str(target))
        run.frames += len(batch)
        batch.clear()

    try:
        for frame in tqdm(source, desc="predict", unit="frame", disable=not progress):
            batch.append(frame)
            if len(batch) == batch_size:
                flush()
        flush()
    finally:
        if writer is not None:
            writer.close()
            run.outputs.append(str(writer.path))
    run.wall_seconds = time.perf_counter() - start
    write_coco_results(out / "poses.json", poses)
    (out / "pixel_counts.json").write_text(json.dumps({"classes": list(CLASS_NAMES), "images": counts}) + "\n")
    run.outputs += [str(out / "poses.json"), str(out / "pixel_counts.json")]
    return run


def _write_png(path: Path, picture: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(picture).save(path)
