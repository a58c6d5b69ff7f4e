"""Teacher-output cache: frozen teachers run once per image, before augmentation.

``TeacherCache.build`` letterboxes every image of a dataset to the cache's input size, runs the
teachers and writes one file per image (``<root>/<tag>/<index>.pt``: what distillation reads of the
teachers' answer, one byte a value, and the letterbox affine; see :mod:`distill.cache_codec`).
``CachedTeacherDataset`` adds those entries to each (augmented) training sample;
:class:`distill.teacher_sources.CachedTeachers` warps them into the sample's frame
(:func:`distill.replay.replay_cached`) for the distillation objective. The build's first line gives
the cache's projected size for the dataset.

A cache may hold several letterbox sizes (``<root>/<tag>/<size>/<index>.pt``); each sample then reads
the one whose scale is nearest its own augmented scale (:func:`nearest_cache_size`). A teacher answers
an image shown at a scale it was not trained on quite differently, so the replayed maps drift from the online
ones as the scales part (``tools/cache_fidelity.py`` measures it; docs/results.md, "Teacher cache").

Between two cached scales the teacher's answer changes smoothly, so a sample may instead mix the two
sizes whose scales bracket its own (``CachedTeacherDataset(..., blend=True)``, weights linear in log
scale; :func:`bracketing_cache_sizes`), which replays closer to the online maps than either size alone.

A cache built ``mirrored`` also holds each image's mirror run through the teachers
(``<index>m.pt``), which mirrored samples read: a teacher is not exactly mirror-symmetric, so a mirror
replayed from the plain pass would shift its peaks.

Under ``torchrun`` every rank builds a share of the images on its own device and the cache is complete when
:func:`build_on_ranks` returns on any rank; only rank 0 writes the manifest, and every file is written under
a temporary name of its own and renamed into place.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from distill.cache_codec import QUANTISED_KEYS, SCALE, encode_entry, entry_bytes, pack, unpack
from distill.kd_losses import tag_form
from distill.pose_kd import PSEUDO_THRESHOLDS
from distill.replay import BLEND
from mtl_ehrnet.data.raw_dataset import RawDataset
from mtl_ehrnet.data.transforms import TestTransform
from mtl_ehrnet.training.distributed import Context, run_on_every_rank

# Mixed across two letterbox sizes; tags and people are not (see CachedTeacherDataset).
BLENDED_KEYS = tuple(key + suffix for key in ("heatmaps", "heatmaps_lr", "seg") for suffix in ("", SCALE))
PREFIX = "teacher_"
DATASETS = "datasets"  # the manifest's fingerprint of each tag's image set
FORMAT = "deflated uint8 maps (heatmaps at strides 2 and 4), people for pseudo tag KD"
MAX_PEOPLE = PSEUDO_THRESHOLDS["max_people"]  # rows every sample's ``people`` is padded to, so that a batch collates


def is_mirrored(affine: torch.Tensor) -> bool:
    """Whether a (2, 3) sample affine mirrors the image (negative determinant)."""
    return bool(torch.linalg.det(affine[:, :2].double()) < 0)


def mirror_letterbox(image: torch.Tensor, affine: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """A letterboxed image (C, L, L) mirrored left to right, and its pixel-centre affine (2, 3): original ->
    mirrored pixels, ``x -> L - 1 - x`` after the letterbox (the data layer's stored affines are in pixel
    centres)."""
    mirrored = affine.clone()
    mirrored[0] = -affine[0]
    mirrored[0, 2] += image.shape[-1] - 1
    return image.flip(-1), mirrored


def _log_scale_gaps(sizes: Sequence[int], sample_affine: torch.Tensor, orig_hw: Sequence[int]) -> Dict[int, float]:
    """log(letterbox scale / sample scale) per size: a letterbox of size L shows an image at L / max(h, w), a
    sample at sqrt(|det A|)."""
    scale = math.sqrt(abs(float(torch.linalg.det(sample_affine[:, :2].double()))))
    long_side = float(max(int(v) for v in orig_hw))
    return {size: math.log(size / long_side / scale) for size in sizes}


def cache_sizes(input_size: Union[int, Sequence[int]], blend: bool = False) -> Tuple[int, ...]:
    """A cache's letterbox sizes, sorted and distinct, refusing none, one that is not a positive multiple of
    32 and, for a ``blend`` (``--cache-blend``), fewer than two."""
    sizes = tuple(sorted({int(s) for s in ([input_size] if isinstance(input_size, int) else input_size)}))
    if not sizes or any(s <= 0 or s % 32 for s in sizes):
        raise ValueError(f"cache input sizes (--cache-input-size) must be positive multiples of 32, got {list(sizes)}")
    if blend and len(sizes) < 2:
        raise ValueError("cache_blend (--cache-blend) mixes two cached sizes per sample: give several "
                         f"--cache-input-size sizes, got {list(sizes)}")
    return sizes


def nearest_cache_size(sizes: Sequence[int], sample_affine: torch.Tensor, orig_hw: Sequence[int]) -> int:
    """The letterbox size whose scale is nearest (in ratio) the scale of an augmented sample.

    Args:
        sizes: the cache's square letterbox sizes.
        sample_affine: (2, 3) original -> student input pixels; its scale is sqrt(|det|).
        orig_hw: the original image's (height, width); a letterbox of size L shows it at L / max(h, w).
    """
    gaps = _log_scale_gaps(sizes, sample_affine, orig_hw)
    return min(sizes, key=lambda size: abs(gaps[size]))


def bracketing_cache_sizes(
    sizes: Sequence[int], sample_affine: torch.Tensor, orig_hw: Sequence[int]
) -> Tuple[Tuple[int, float], Tuple[int, float]]:
    """The two letterbox sizes whose scales bracket an augmented sample's, with weights linear in log scale
    (they sum to 1; the nearer size weighs more and comes first). A sample outside the cached scales gets
    the nearest size twice, with weights 1 and 0. Arguments as :func:`nearest_cache_size`."""
    gaps = _log_scale_gaps(sizes, sample_affine, orig_hw)
    below = [s for s in sizes if gaps[s] <= 0]
    above = [s for s in sizes if gaps[s] > 0]
    if not below or not above:
        nearest = min(sizes, key=lambda size: abs(gaps[size]))
        return (nearest, 1.0), (nearest, 0.0)
    low, high = max(below, key=lambda s: gaps[s]), min(above, key=lambda s: gaps[s])
    weight_low = gaps[high] / (gaps[high] - gaps[low])
    pair = ((low, weight_low), (high, 1.0 - weight_low))
    return pair if weight_low >= 0.5 else pair[::-1]


class TeacherCache:
    """Cached teacher outputs under ``root``.

    Args:
        root: cache directory.
        teachers: frozen teachers whose outputs are cached (their output dicts are merged).
        input_size: letterbox size the teachers run at, or several (each image is cached at each); multiples
            of 32.
        identity: what the cached outputs depend on (teacher checkpoints...); a cache built for another
            identity is refused instead of silently reused.
        mirrored: also cache each image's mirror, for the mirrored samples to read.
        tag_kd: the tag KD loss the entries serve (:mod:`distill.kd_losses`): ``pseudo`` caches the teacher's
            people grouped at build time, ``relational`` (and registered losses, unless they say otherwise) its
            tags, ``none`` neither (:func:`distill.cache_codec.encode_entry`).

    The manifest (``manifest.json``: the identity) is checked here and written by :meth:`claim`, which the
    first :meth:`build` of rank 0 calls.
    """

    def __init__(self, root: Union[str, Path], teachers: Dict[str, nn.Module], input_size: Union[int, Sequence[int]],
                 identity: Dict[str, str], mirrored: bool = False, tag_kd: str = "pseudo") -> None:
        self.input_sizes = cache_sizes(input_size)
        self.root = Path(root)
        self.teachers = teachers
        self.mirrored = mirrored
        self.tag_kd = tag_kd
        tags = {"people": f"people grouped at build time ({PSEUDO_THRESHOLDS})", "tags": "uint8 tags", None: "none"}
        self.identity = {**identity, "input_size": ",".join(str(s) for s in self.input_sizes), "format": FORMAT,
                         "tags": tags[tag_form(tag_kd)]}
        if mirrored:
            self.identity["mirrored"] = "each image's mirror cached too"
        self.manifest = self.root / "manifest.json"
        stored = self._stored()
        if stored is not None:
            stored.pop(DATASETS, None)
            if stored != self.identity:
                raise ValueError(f"teacher cache {self.root} was built for {stored}, not {self.identity}; "
                                 "use another --cache DIR")

    def _stored(self) -> Optional[Dict]:
        return json.loads(self.manifest.read_text()) if self.manifest.is_file() else None

    def check_dataset(self, tag: str, dataset: RawDataset) -> Dict[str, str]:
        """``dataset``'s fingerprint (:meth:`RawDataset.fingerprint`), after checking that the cache holds
        ``tag`` entries for this very set, if it holds any: entries are keyed by sample index, so another
        set would be served other images' maps.

        Raises:
            ValueError: naming the cache, the tag and what differs.
        """
        fingerprint = dataset.fingerprint()
        recorded = ((self._stored() or {}).get(DATASETS) or {}).get(tag)
        if recorded is not None and recorded != fingerprint:
            changed = ", ".join(f"{key} {recorded.get(key)!r} -> {fingerprint.get(key)!r}"
                                for key in sorted(set(recorded) | set(fingerprint))
                                if recorded.get(key) != fingerprint.get(key))
            raise ValueError(f"teacher cache {self.root} holds {tag!r} entries of another image set ({changed}); "
                             "use another --cache DIR")
        return fingerprint

    def claim(self, fingerprints: Optional[Dict[str, Dict[str, str]]] = None) -> None:
        """Writes the manifest, before any entry, so that entries of an interrupted build are never taken for
        another identity's or another image set's; ``fingerprints`` (by tag, from :meth:`check_dataset`) join
        those recorded. One process only (rank 0): the file is replaced atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        recorded = dict((self._stored() or {}).get(DATASETS) or {})
        recorded.update(fingerprints or {})
        manifest = {**self.identity, DATASETS: recorded}
        write_atomically(self.manifest, lambda handle: handle.write(json.dumps(manifest, indent=2).encode()))

    def path(self, tag: str, index: int, size: Optional[int] = None, mirrored: bool = False) -> Path:
        """Where entry ``index`` of ``tag`` lies; ``size`` picks one of several letterbox sizes, ``mirrored``
        the image's mirror."""
        if mirrored and not self.mirrored:
            raise ValueError(f"teacher cache {self.root} holds no mirrored entries (build it mirrored)")
        name = f"{index}{'m' if mirrored else ''}.pt"
        if len(self.input_sizes) == 1:
            return self.root / tag / name
        if size not in self.input_sizes:
            raise ValueError(f"teacher cache {self.root} holds sizes {list(self.input_sizes)}, not {size}")
        return self.root / tag / str(size) / name

    def build(self, dataset: RawDataset, tag: str, device: Union[str, torch.device, None] = None, batch_size: int = 8,
              progress: bool = True, rank: int = 0, world: int = 1) -> int:
        """Computes the missing entries of ``dataset`` at every size (so an interrupted build resumes); returns
        how many.

        Args:
            device: where the teachers run; they are moved there. None: where they are.
            rank, world: build only the images ``i`` with ``i % world == rank`` (one process of ``world``; see
                :func:`build_on_ranks`). Rank 0 writes the manifest.
        """
        fingerprint = self.check_dataset(tag, dataset)
        if device is None:
            device = _device_of(self.teachers.values())
        for teacher in self.teachers.values():
            teacher.to(device)
        if rank == 0:
            self.claim({tag: fingerprint})
        return sum(self._build_size(dataset, tag, size, device, batch_size, progress, rank, world)
                   for size in self.input_sizes)

    @torch.inference_mode()
    def _build_size(self, dataset: RawDataset, tag: str, size: int, device: Union[str, torch.device], batch_size: int,
                    progress: bool, rank: int, world: int) -> int:
        transform = TestTransform(size)
        views = (False, True) if self.mirrored else (False,)
        # A fixed share of the indices, not of the missing entries: ranks list those at different moments.
        mine = range(rank, len(dataset), world)
        todo = [(i, m) for i in mine for m in views if not self.path(tag, i, size, m).is_file()]
        self.path(tag, 0, size).parent.mkdir(parents=True, exist_ok=True)
        name = tag if len(self.input_sizes) == 1 else f"{tag} at {size}"
        for start in tqdm(range(0, len(todo), batch_size), desc=f"teacher cache {name}", disable=not progress):
            chunk = todo[start:start + batch_size]
            # An image's plain and mirrored entries come from one load and letterbox.
            letterboxed = {index: transform(dataset.load(index))
                           for index in dict.fromkeys(index for index, _ in chunk)}
            samples = [mirror_letterbox(letterboxed[i]["image"], letterboxed[i]["affine"]) if mirrored
                       else (letterboxed[i]["image"], letterboxed[i]["affine"]) for i, mirrored in chunk]
            images = torch.stack([image for image, _ in samples]).to(device)
            outputs: Dict[str, torch.Tensor] = {}
            for teacher in self.teachers.values():
                outputs.update(teacher(images))
            for row, ((index, mirrored), (_, affine)) in enumerate(zip(chunk, samples)):
                entry = encode_entry({k: v[row] for k, v in outputs.items()}, affine, self.tag_kd)
                write_atomically(self.path(tag, index, size, mirrored), lambda handle: torch.save(pack(entry), handle))
        return len(todo)

    @torch.inference_mode()
    def projected_bytes(self, datasets: Iterable[RawDataset], device: Union[str, torch.device, None] = None) -> int:
        """The cache's projected size on disk for ``datasets``: one image's entries (the first image of the
        first dataset, at every size) measured as written, times the images and views."""
        datasets = list(datasets)
        device = _device_of(self.teachers.values()) if device is None else device
        first = datasets[0].load(0)
        per_image = 0
        for size in self.input_sizes:
            letterboxed = TestTransform(size)(first)
            outputs: Dict[str, torch.Tensor] = {}
            for teacher in self.teachers.values():
                outputs.update(teacher.to(device)(letterboxed["image"][None].to(device)))
            entry = encode_entry({k: v[0] for k, v in outputs.items()}, letterboxed["affine"], self.tag_kd)
            per_image += entry_bytes(pack(entry))
        return per_image * (2 if self.mirrored else 1) * sum(len(d) for d in datasets)

    def load(self, tag: str, index: int, size: Optional[int] = None, mirrored: bool = False) -> Dict[str, torch.Tensor]:
        """Entry ``index`` of ``tag`` (at ``size`` when the cache holds several; its mirror's with ``mirrored``)."""
        path = self.path(tag, index, size, mirrored)
        if not path.is_file():
            raise FileNotFoundError(f"teacher cache entry missing: {path} (build the cache first)")
        return unpack(torch.load(path, map_location="cpu", weights_only=True), str(path))


def build_on_ranks(cache: TeacherCache, datasets: Dict[str, RawDataset], context: Context, batch_size: int = 8) -> int:
    """Builds the missing entries of every ``{tag: dataset}``, each rank its share on its device (the teachers
    are moved there); every rank must call this, after :func:`mtl_ehrnet.training.distributed.setup`.

    Returns, on every rank, how many entries the ranks built together, once all are written; raises on every
    rank when one rank's share failed.
    """
    def claim() -> None:
        if context.is_main:
            images = sum(len(d) for d in datasets.values())
            size = cache.projected_bytes(datasets.values(), context.device)
            print(f"teacher cache {cache.root}: {images} images x {len(cache.input_sizes)} size(s)"
                  f"{' x 2 views' if cache.mirrored else ''}, projected {size / 2**20:.1f} MiB "
                  f"({size / max(images, 1) / 2**10:.1f} KiB an image)")
            cache.claim({tag: cache.check_dataset(tag, data) for tag, data in datasets.items()})

    run_on_every_rank(claim, context)
    counts = run_on_every_rank(lambda: sum(cache.build(data, tag, context.device, batch_size, progress=context.is_main,
                                                       rank=context.rank, world=context.world)
                                           for tag, data in datasets.items()), context)
    return sum(counts)


def _device_of(modules: Iterable[nn.Module]) -> torch.device:
    """The device of the first parameter or buffer of ``modules`` (the CPU when they hold none)."""
    for module in modules:
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            return tensor.device
    return torch.device("cpu")


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes ``path`` through a temporary file of its own in the same folder, renamed into place: readers
    never see half a file, and processes writing the same path never share a temporary name."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CachedTeacherDataset(Dataset):
    """A training dataset whose samples also carry the cached teacher maps as ``teacher_<key>`` and the
    letterbox affine as ``teacher_affine`` (from the size nearest each sample's scale, when the cache holds
    several; a mirrored sample reads the image's mirror, when the cache holds it).

    With ``blend`` (a cache of several sizes) a sample also reads the second of the two sizes whose scales
    bracket its own (:func:`bracketing_cache_sizes`), as ``teacher_blend_<key>`` for the heatmaps and the
    segmentation logits, with its ``teacher_blend_affine``, ``teacher_blend_letterbox`` and
    ``teacher_blend_weight``; the replay mixes the two (:func:`distill.replay.replay_cached`). The tags stay
    the nearest size's alone: a teacher's tag values are arbitrary per pass, so a mean of two passes' tags
    would blur one person's embedding.
    """

    def __init__(self, dataset: RawDataset, cache: TeacherCache, tag: str, blend: bool = False) -> None:
        cache.check_dataset(tag, dataset)
        self.dataset, self.cache, self.tag = dataset, cache, tag
        self.blend = blend and len(cache.input_sizes) > 1

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        sample = self.dataset[index]
        sizes = self.cache.input_sizes
        mirrored = self.cache.mirrored and is_mirrored(sample["affine"])
        if len(sizes) == 1:
            entry = self.cache.load(self.tag, index, mirrored=mirrored)
        elif self.blend:
            (size, _), (other, weight) = bracketing_cache_sizes(sizes, sample["affine"], sample["orig_size"].tolist())
            entry = _pad_to(self.cache.load(self.tag, index, size, mirrored), size, sizes[-1])
            second = entry if other == size else _pad_to(self.cache.load(self.tag, index, other, mirrored), other,
                                                         sizes[-1])
            entry = {**entry, **blend_entry(second, weight)}
        else:
            size = nearest_cache_size(sizes, sample["affine"], sample["orig_size"].tolist())
            entry = _pad_to(self.cache.load(self.tag, index, size, mirrored), size, sizes[-1])
        for key, value in _pad_people(entry).items():
            sample[PREFIX + key] = value
        return sample


def blend_entry(second: Dict[str, torch.Tensor], weight: float) -> Dict[str, torch.Tensor]:
    """The keys a cache entry adds as the second of a blend (``blend_<key>``: its heatmaps, segmentation
    logits, affine and letterbox) and ``blend_weight``, its share of the mix."""
    found = {f"{BLEND}{key}": value for key, value in second.items() if key in BLENDED_KEYS + ("affine", "letterbox")}
    found[f"{BLEND}weight"] = torch.tensor(float(weight))
    return found


def _pad_to(entry: Dict[str, torch.Tensor], size: int, largest: int) -> Dict[str, torch.Tensor]:
    """Zero-pads an entry's maps at the right and bottom to the shapes of the largest letterbox, so that a
    batch collates, and records its own size as ``letterbox`` (the replay treats the padding as outside)."""
    padded = {}
    for key, value in entry.items():
        if key in QUANTISED_KEYS:
            extra = value.shape[-1] * largest // size - value.shape[-1]
            value = F.pad(value, (0, extra, 0, extra))
        padded[key] = value
    padded["letterbox"] = torch.tensor(size)
    return padded


def _pad_people(entry: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An entry whose ``people`` (P, K, 3) are padded with rows of zeros (invisible) to :data:`MAX_PEOPLE`."""
    if "people" not in entry:
        return entry
    people = entry["people"][:MAX_PEOPLE]
    return {**entry, "people": F.pad(people, (0, 0, 0, 0, 0, MAX_PEOPLE - len(people)))}


def cached_outputs(batch: Dict[str, torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
    """The cached teacher entries of a collated batch, or None when the batch carries none."""
    found = {k[len(PREFIX):]: v for k, v in batch.items() if k.startswith(PREFIX)}
    return found or None
