"""A labelled split in memory, with the validator's exact pixels: decode → resize/crop → uint8 tensors.

Training reads the same `DIR/<media_type>/<dataset>/…` layout `kit bench --data`
reads, through the simulator's own dataset listing, decoders, resize/crop and frame
selection (first T frames, the last one repeated for short clips). So the pixels a
detector learns from are the pixels the validator will send it; normalisation then
happens inside the `Detector` wrapper, as it will inside the exported graph.

Samples the validator would drop (undecodable, frames of differing sizes) are
dropped here too and counted by reason.

`robustness_copies` adds the evaluator's robustness pass at train time (`kit train
--robustness-augment P`): a seeded P-share of each dataset's samples is decoded again,
put through `validator_sim.robustness`'s own chain (`augment_image` / `augment_clip`,
applied where the bench's robustness pass applies it: after decoding, before the
resize/crop) and kept as extra samples with the same labels (see its docstring).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from discriminator.errors import InputError, UsageError
from validator_sim import robustness
from validator_sim.datasets import Dataset, Listing, discover_datasets, iter_payloads, list_samples
from validator_sim.decode import DecodeError, MediaSource, decode_image, decode_video, video_decoder
from validator_sim.pixel_cache import PixelRecipe, pixel_recipe, with_default_cache
from validator_sim.preprocess import clip_to_tchw, image_to_chw
from validator_sim.profiles import DEFAULT_PROFILE, Profile, get_profile
from validator_sim.robustness import augment_clip, augment_image

#: Media types in the order the multiclass scoring numbers them.
MEDIA_TYPES = ("real", "synthetic", "semisynthetic")
#: Threads decoding samples in parallel (PyAV and OpenCV release the GIL).
DECODE_WORKERS = 2


@dataclass
class LoadedSplit:
    """Every decodable sample of a split, as the validator would feed it."""

    #: uint8 `[N,3,H,W]` (image) or `[N,T,3,H,W]` (video).
    inputs: torch.Tensor
    #: Class index per sample in the detector's class order (real = 0).
    labels: torch.Tensor
    #: 0 real / 1 AI per sample, as the binary scoring counts it.
    binary_labels: np.ndarray
    #: 0 real / 1 synthetic / 2 semisynthetic per sample, as the multiclass scoring counts it.
    media_labels: np.ndarray
    dataset_names: list[str]
    #: Drop reason → count, for samples the validator would also drop.
    dropped: dict[str, int] = field(default_factory=dict)
    #: Where each sample came from: its dataset's listing and its index there (what `robustness_copies` reads again).
    origins: list[tuple[Listing, int]] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __add__(self, other: LoadedSplit) -> LoadedSplit:
        """Both splits' samples, this one's first (e.g. a training split and its robustness copies)."""
        dropped = Counter(self.dropped)
        dropped.update(other.dropped)
        return LoadedSplit(inputs=torch.cat([self.inputs, other.inputs]), labels=torch.cat([self.labels, other.labels]),
                           binary_labels=np.concatenate([self.binary_labels, other.binary_labels]),
                           media_labels=np.concatenate([self.media_labels, other.media_labels]),
                           dataset_names=self.dataset_names + other.dataset_names, dropped=dict(dropped),
                           origins=self.origins + other.origins)

    def class_counts(self, class_names: tuple[str, ...]) -> dict[str, int]:
        counts = Counter(int(c) for c in self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(class_names)}


def class_index(media_type: str, class_names: tuple[str, ...]) -> int:
    """The training target for a media type: its own class if the detector has one, else class 1 (AI)."""
    if media_type == "real":
        return 0
    return class_names.index(media_type) if media_type in class_names else 1


def check_media_type_folders(data_dir: Path) -> None:
    """Refuse folders at the media-type level that the layout does not know (`fake/`, `Synthetic/` …):
    their samples would otherwise be left out without a word."""
    if not Path(data_dir).is_dir():
        return  # discover_datasets says so
    unknown = sorted(p.name for p in Path(data_dir).iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in MEDIA_TYPES)
    if unknown:
        names = ", ".join(f"{name}/" for name in unknown)
        raise InputError(f"{data_dir} has folder(s) {names} where a media type belongs, so their samples would not be used",
                         f"rename them to one of {', '.join(MEDIA_TYPES)} (lower case): the layout is "
                         f"{data_dir}/<{'|'.join(MEDIA_TYPES)}>/<dataset-name>/…")


def require_both_classes(split: "LoadedSplit", data_dir: Path | str, option: str) -> None:
    """Refuse a split without both real and AI samples: nothing can be learnt or scored (MCC is 0 by construction)."""
    present = sorted({MEDIA_TYPES[int(i)] for i in split.media_labels})
    if len(set(split.binary_labels.tolist())) < 2:
        missing = "AI (synthetic or semisynthetic)" if present == ["real"] else "real"
        raise InputError(f"{option} {data_dir} holds only {'/'.join(present)} samples ({len(split)}); a detector needs {missing} ones too",
                         f"add {data_dir}/<{'real' if missing == 'real' else 'synthetic|semisynthetic'}>/<dataset-name>/… and rerun")


def split_datasets(data_dir: Path, modality: str) -> list[Dataset]:
    """The datasets of one modality under `data_dir` (layout `<media_type>/<dataset>/…`)."""
    check_media_type_folders(Path(data_dir))
    datasets = [d for d in discover_datasets(data_dir) if d.modality == modality]
    if not datasets:
        raise InputError(f"no {modality} datasets under {data_dir}",
                         f"lay {modality} data out as {data_dir}/<real|synthetic|semisynthetic>/<dataset-name>/…")
    return datasets


def _prepare(payload: bytes | Path, modality: str, height: int, width: int, frames: int | None,
             profile: Profile) -> np.ndarray | DecodeError:
    try:
        if modality == "image":
            return image_to_chw(decode_image(payload, profile.image_resave), height, width, profile.resize)
        assert frames is not None
        clip = decode_video(payload, frames, None, profile.fallback_fps, threads=1, decoder=video_decoder(profile))
        return clip_to_tchw(clip, frames, height, width, profile.resize)
    except DecodeError as exc:
        return exc
    except cv2.error as exc:
        return DecodeError("cannot be resized", str(exc).strip().splitlines()[-1])


def _prepare_robust(payload: bytes | Path, modality: str, height: int, width: int, frames: int | None,
                    profile: Profile) -> np.ndarray | DecodeError:
    """`_prepare` with the evaluator's robustness chain between decoding and the resize/crop, in the order
    `validator_sim.robustness.run_robustness_pass` applies it."""
    try:
        if modality == "image":
            return image_to_chw(augment_image(decode_image(payload, profile.image_resave)), height, width, profile.resize)
        assert frames is not None
        clip = decode_video(payload, frames, None, profile.fallback_fps, threads=1, decoder=video_decoder(profile))
        return clip_to_tchw(augment_clip(clip), frames, height, width, profile.resize)
    except DecodeError as exc:
        return exc
    except (cv2.error, av.FFmpegError) as exc:
        return DecodeError("robustness chain failed", str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__)


@contextmanager
def _decoding_pool() -> Iterator[ThreadPoolExecutor]:
    """DECODE_WORKERS threads; on Ctrl-C (or any error) the samples not started yet are cancelled rather than
    decoded, so an interrupt lands at once and nothing more is written to the pixel cache."""
    pool = ThreadPoolExecutor(DECODE_WORKERS)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _prepare_listed(prepare: Callable[[MediaSource], np.ndarray | DecodeError], recipe: PixelRecipe,
                    chosen: list[tuple[Listing, list[int]]], class_names: tuple[str, ...],
                    on_progress: Callable[[int, int], None] | None) -> LoadedSplit:
    """The `chosen` samples (indices in listing order) of each listing through `prepare` behind the pixel cache
    under `recipe`, with their labels; undecodable ones counted by reason. `on_progress(done, total)` after each."""
    prepare = with_default_cache(prepare, recipe)
    total = sum(len(indices) for _listing, indices in chosen)
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    binary: list[int] = []
    media: list[int] = []
    names: list[str] = []
    origins: list[tuple[Listing, int]] = []
    dropped: Counter[str] = Counter()
    done = 0
    with _decoding_pool() as pool:
        for listing, indices in chosen:
            dataset = listing.dataset
            payloads = (payload for _key, payload in iter_payloads(listing, indices))
            for index, prepared in zip(indices, pool.map(prepare, payloads)):
                done += 1
                if on_progress:
                    on_progress(done, total)
                if isinstance(prepared, DecodeError):
                    dropped[prepared.reason] += 1
                    continue
                arrays.append(prepared)
                labels.append(class_index(dataset.media_type, class_names))
                binary.append(dataset.label)
                media.append(MEDIA_TYPES.index(dataset.media_type))
                names.append(dataset.name)
                origins.append((listing, index))
    return LoadedSplit(
        inputs=torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros((0, *recipe.sample_shape), dtype=torch.uint8),
        labels=torch.tensor(labels, dtype=torch.int64),
        binary_labels=np.asarray(binary, dtype=np.int64),
        media_labels=np.asarray(media, dtype=np.int64),
        dataset_names=names,
        dropped=dict(dropped),
        origins=origins,
    )


def load_split(data_dir: Path, modality: str, height: int, width: int, frames: int | None,
               class_names: tuple[str, ...], profile: Profile | str = DEFAULT_PROFILE,
               on_progress: Callable[[int, int], None] | None = None) -> LoadedSplit:
    """Decode every sample of `modality` under `data_dir` into memory; `on_progress(done, total)` after each."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    listings = [list_samples(d) for d in split_datasets(Path(data_dir), modality)]
    # Decoded once per profile, size and frame count: later runs read the pixel cache (`kit cache info`).
    split = _prepare_listed(lambda p: _prepare(p, modality, height, width, frames, profile),
                            pixel_recipe(_prepare, profile, modality, height, width, frames, None),
                            [(listing, list(range(len(listing.keys)))) for listing in listings], class_names, on_progress)
    if not len(split):
        detail = f" ({sum(split.dropped.values())} undecodable)" if split.dropped else ""
        raise InputError(f"no usable {modality} samples under {data_dir}{detail}",
                         "check the files: the validator would drop every one of them too")
    return split


def check_robustness_fraction(fraction: float) -> None:
    """Refuse a `--robustness-augment` outside [0, 1] (NaN included), before any work."""
    if not 0.0 <= fraction <= 1.0:
        raise UsageError(f"--robustness-augment must be a fraction between 0 and 1, got {fraction}",
                         "pass e.g. --robustness-augment 0.5 (half of each dataset's training samples are also seen "
                         "through the evaluator's robustness chain), or 0 for none")


def choose_robustness_copies(split: LoadedSplit, fraction: float, seed: int) -> list[tuple[Listing, list[int]]]:
    """Which samples of `split` get a robustness copy: round(fraction · n) of each dataset's n decoded samples,
    drawn by a shuffle seeded by (seed, dataset name); per listing, indices in listing order."""
    by_dataset: dict[str, tuple[Listing, list[int]]] = {}
    for listing, index in split.origins:
        by_dataset.setdefault(listing.dataset.name, (listing, []))[1].append(index)
    chosen = []
    for name, (listing, indices) in by_dataset.items():
        count = math.floor(fraction * len(indices) + 0.5)
        order = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(len(indices))
        picked = sorted(indices[int(i)] for i in order[:count])
        if picked:
            chosen.append((listing, picked))
    return chosen


def robustness_copies(split: LoadedSplit, fraction: float, seed: int, modality: str, height: int, width: int,
                      frames: int | None, class_names: tuple[str, ...], profile: Profile | str = DEFAULT_PROFILE,
                      on_progress: Callable[[int, int], None] | None = None) -> LoadedSplit:
    """Copies of a seeded `fraction` of `split`'s samples as the evaluator's robustness pass sees them
    (`choose_robustness_copies` picks them; `on_progress(done, total)` after each).

    Each copy is decoded again from its media, put through `augment_image` / `augment_clip`, and only then
    resized/cropped for the detector: the order of the bench's robustness pass. Copies are computed once, when
    the split is loaded (the chain costs a JPEG/WebP round trip per image or an H.264 encode and decode per clip,
    too much for every step), and kept in the pixel cache under their own recipe, which hashes the chain's code.
    The caller adds them to the training split as extra samples with their originals' labels (`split + copies`):
    every epoch then shows each chosen sample both ways, as the network scores both (sn34 = 0.8·base + 0.2·aug),
    rather than swapping one for the other and showing less of the clean sample, which carries 0.8 of the score.
    The price is (1 + fraction)× the steps per epoch. The chain itself draws nothing at random, so the seed only
    picks which samples are copied. A sample the chain cannot re-encode gets no copy and is counted in `dropped`
    under "robustness chain failed".
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    return _prepare_listed(lambda p: _prepare_robust(p, modality, height, width, frames, profile),
                           pixel_recipe(_prepare_robust, profile, modality, height, width, frames, None, modules=(robustness,)),
                           choose_robustness_copies(split, fraction, seed), class_names, on_progress)
