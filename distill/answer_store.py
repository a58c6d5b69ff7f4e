"""Teachers' answers recorded ahead of a distillation run for its exact batches, one file per batch.

A distilled student waits on its frozen teachers at every step. Where a core is idle before the run starts (in the
quick start the segmentation teacher is done long before the pose teacher),
:func:`distill.record_answers.record_teacher_answers` walks the run's batches ahead of it and stores what a teacher
answers for each; :class:`distill.teacher_sources.RecordedTeachers` then reads them instead of running that teacher.

A batch's answer is stored under a digest of its images (:func:`batch_key`), so the run finds it whatever the order
in which it meets its batches (a resumed run, a dropped step); a batch the store lacks is answered online. The
stored maps are those of the online pass to the bit where the pass would run as it ran when recorded: the same
teacher file, torch threads, memory format, autocast, flip averaging and thread of its own
(:func:`answer_identity`), which the store refuses to serve otherwise.

Layout: ``<root>/<key>.pt`` per batch (``{output name: tensor}``, as the teacher returned it, strides included), and
``<root>/answers.json`` once every batch of the run is recorded (:data:`MANIFEST`).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from distill.teacher_cache import write_atomically
from mtl_ehrnet.training import RunConfig
from mtl_ehrnet.training.engine import autocast_dtype

PathLike = Union[str, Path]
MANIFEST = "answers.json"  # written when a recording is complete
RECORDING = "recording.json"  # what a recording in progress is for: a resumed one keeps its batches only if it matches
ANSWER_FILE = re.compile(r"[0-9a-f]{40}\.pt")  # one batch's answer, named by its batch_key


def batch_key(images: torch.Tensor) -> str:
    """A digest of a batch's images (B, 3, H, W): their shape, dtype and values, whatever their memory format."""
    data = images.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{tuple(data.shape)}{data.dtype}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def answer_identity(teachers: Mapping[str, PathLike], config: RunConfig, device: torch.device, flip: bool,
                    concurrent: bool) -> Dict[str, Any]:
    """What a teacher's answer to a batch depends on besides the batch: the teacher files (path and modification
    time), this process's torch threads, the run's memory format and autocast, flip averaging, and whether the
    teachers answer in a thread of their own (:class:`distill.teacher_sources.OnlineTeachers`)."""
    amp = autocast_dtype(config, device)
    return {
        "teachers": {task: f"{Path(path).resolve()}@{Path(path).stat().st_mtime_ns}"
                     for task, path in sorted(teachers.items())},
        "threads": torch.get_num_threads(),
        "device": device.type,
        "memory_format": "channels_last" if config.channels_last else "contiguous",
        "autocast": None if amp is None else str(amp),
        "teacher_flip": bool(flip),
        "concurrent": bool(concurrent),
    }


class TeacherAnswers:
    """The answers recorded under ``root`` for runs of ``identity`` (:func:`answer_identity`).

    Args:
        root: the recording's directory.
        identity: what the answers were (or are to be) recorded for; its ``teachers`` name the tasks answered.
    """

    def __init__(self, root: PathLike, identity: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.identity = dict(identity)
        self.tasks: Tuple[str, ...] = tuple(identity["teachers"])

    @classmethod
    def open(cls, root: PathLike) -> "TeacherAnswers":
        """A complete recording (its identity as recorded).

        Raises:
            FileNotFoundError: ``root`` holds no complete recording.
        """
        manifest = Path(root) / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found: {root} holds no complete recording of teacher answers "
                                    "(record_teacher_answers writes it when every batch is recorded)")
        return cls(root, json.loads(manifest.read_text())["identity"])

    def check(self, identity: Mapping[str, Any]) -> None:
        """Refuses to serve a run of another ``identity`` (:func:`answer_identity`), naming each difference."""
        differs = {key: (self.identity.get(key), value) for key, value in identity.items()
                   if self.identity.get(key) != value}
        if differs:
            said = "; ".join(f"{key}: recorded {old!r}, this run {new!r}" for key, (old, new) in differs.items())
            raise ValueError(f"the teacher answers in {self.root} were recorded for another run ({said}): the maps "
                             "would not be this run's; record them again, or train without them")

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def find(self, images: torch.Tensor) -> Optional[Dict[str, torch.Tensor]]:
        """The recorded answer to the batch of ``images`` (B, 3, H, W) on their device, or None."""
        path = self.path(batch_key(images))
        if not path.is_file():
            return None
        answer = torch.load(path, map_location="cpu", weights_only=True)
        return {name: value.to(images.device) for name, value in answer.items()}

    def stored(self, key: str) -> bool:
        """Whether the batch of :func:`batch_key` ``key`` has its answer stored."""
        return self.path(key).is_file()

    def write(self, key: str, answer: Mapping[str, torch.Tensor]) -> None:
        """Stores ``answer`` ({output name: (B, ...) map}) for the batch of :func:`batch_key` ``key``, atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        cpu = {name: value.detach().cpu() for name, value in answer.items()}
        write_atomically(self.path(key), lambda stream: torch.save(cpu, stream))

    def start(self, resume: bool = True) -> None:
        """Begins a recording, or resumes one: the batches an interrupted recording for this identity stored are kept
        where ``resume``; all others are removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        recording = self.root / RECORDING
        previous = json.loads(recording.read_text()) if recording.is_file() else None
        if not resume or previous != self.identity:
            (self.root / MANIFEST).unlink(missing_ok=True)
            for stale in self.root.glob("*.pt"):
                if ANSWER_FILE.fullmatch(stale.name):  # never another file of a shared directory (a checkpoint)
                    stale.unlink()
            recording.write_text(json.dumps(self.identity, indent=2))

    def finish(self, batches: int) -> Path:
        """Marks the recording complete (``batches`` recorded); returns the manifest."""
        manifest = self.root / MANIFEST
        text = json.dumps({"identity": self.identity, "batches": batches}, indent=2)
        write_atomically(manifest, lambda stream: stream.write(text.encode()))
        (self.root / RECORDING).unlink(missing_ok=True)
        return manifest

