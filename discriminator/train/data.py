"""A labelled split in memory, with the validator's exact pixels: decode → resize/crop → uint8 tensors.

Training reads the same `DIR/<media_type>/<dataset>/…` layout `kit bench --data`
reads, through the simulator's own dataset listing, decoders, resize/crop and frame
selection (first T frames, the last one repeated for short clips). So the pixels a
detector learns from are the pixels the validator will send it; normalisation then
happens inside the `Detector` wrapper, as it will inside the exported graph.

Samples the validator would drop (undecodable, frames of differing sizes) are
dropped here too and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from discriminator.errors import InputError
from validator_sim.datasets import Dataset, discover_datasets, iter_payloads, list_samples
from validator_sim.decode import DecodeError, decode_image, decode_video, video_decoder
from validator_sim.pixel_cache import pixel_recipe, with_default_cache
from validator_sim.preprocess import clip_to_tchw, image_to_chw
from validator_sim.profiles import DEFAULT_PROFILE, Profile, get_profile

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

    def __len__(self) -> int:
        return int(self.labels.shape[0])

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


def load_split(data_dir: Path, modality: str, height: int, width: int, frames: int | None,
               class_names: tuple[str, ...], profile: Profile | str = DEFAULT_PROFILE,
               on_progress: Callable[[int, int], None] | None = None) -> LoadedSplit:
    """Decode every sample of `modality` under `data_dir` into memory; `on_progress(done, total)` after each."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    listings = [list_samples(d) for d in split_datasets(Path(data_dir), modality)]
    total = sum(len(listing.keys) for listing in listings)
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    binary: list[int] = []
    media: list[int] = []
    names: list[str] = []
    dropped: Counter[str] = Counter()
    done = 0
    # Decoded once per profile, size and frame count: later runs read the pixel cache (`kit cache info`).
    prepare = with_default_cache(lambda p: _prepare(p, modality, height, width, frames, profile),
                                 pixel_recipe(_prepare, profile, modality, height, width, frames, None))
    with ThreadPoolExecutor(DECODE_WORKERS) as pool:
        for listing in listings:
            dataset = listing.dataset
            payloads = (payload for _key, payload in iter_payloads(listing, list(range(len(listing.keys)))))
            for prepared in pool.map(prepare, payloads):
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
    if not arrays:
        detail = f" ({sum(dropped.values())} undecodable)" if dropped else ""
        raise InputError(f"no usable {modality} samples under {data_dir}{detail}",
                         "check the files: the validator would drop every one of them too")
    return LoadedSplit(
        inputs=torch.from_numpy(np.stack(arrays)),
        labels=torch.tensor(labels, dtype=torch.int64),
        binary_labels=np.asarray(binary, dtype=np.int64),
        media_labels=np.asarray(media, dtype=np.int64),
        dataset_names=names,
        dropped=dict(dropped),
    )
