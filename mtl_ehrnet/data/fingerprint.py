"""Digests that identify a dataset's samples, for stores keyed by sample index (the teacher cache): they
change when the file list or the labels do."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Union

PathLike = Union[str, Path]
CHUNK = 1 << 20


def text_digest(lines: Iterable[str]) -> str:
    """SHA-1 of the lines, in order."""
    digest = hashlib.sha1()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def files_digest(paths: Iterable[PathLike]) -> str:
    """SHA-1 of the files' contents, in order."""
    digest = hashlib.sha1()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()
