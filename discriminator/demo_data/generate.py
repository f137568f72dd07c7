"""The demo dataset as data (datasets, size presets, file recipes) and the function that writes it.

Layout, which `kit bench --data OUT/<split>` reads:

    OUT/README.txt
    OUT/<split>/datasets.yaml                      every dataset of the split
    OUT/<split>/<media_type>/<dataset>/<files>     media files, or one .zip/.tar/.tar.gz/.parquet

Each class (real, synthetic, semisynthetic) gets the same mix of sizes, formats and
edge cases, so nothing but the pixels' local structure tells the classes apart.
Every sample draws from its own random stream, keyed by (seed, split, modality,
media type, index): one seed gives the same files, whichever subset is generated.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import itertools
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from discriminator.demo_data import content
from discriminator.demo_data.encode import ImageFormat, VideoFormat, encode_image, encode_video
from discriminator.demo_data.sources import write_dataset
from discriminator.errors import OutputExistsError, UsageError

SPLITS = ("train", "val", "test")
#: Bumped when the same seed and size would give different samples; a demo reuses only data of this version.
DATA_VERSION = 4
#: Written first and removed last: its presence says a run was stopped and the splits are partial.
INCOMPLETE_MARKER = "INCOMPLETE"
MEDIA_TYPES = ("real", "synthetic", "semisynthetic")
MODALITIES = ("image", "video")
MODALITY_CHOICES = {"image": ("image",), "video": ("video",), "both": MODALITIES}


@dataclass(frozen=True)
class SizePreset:
    """Samples per class (media type) in each split, per modality."""

    images: dict[str, int]
    videos: dict[str, int]
    purpose: str

    def per_class(self, modality: str, split: str) -> int:
        return (self.images if modality == "image" else self.videos)[split]


SIZES = {
    "tiny": SizePreset({"train": 16, "val": 16, "test": 16}, {"train": 10, "val": 10, "test": 10},
                       "every dataset, format and edge case once or twice; for smoke tests"),
    "small": SizePreset({"train": 120, "val": 40, "test": 40}, {"train": 160, "val": 30, "test": 30},
                        "enough to train and bench the demo detectors in minutes"),
    "medium": SizePreset({"train": 400, "val": 100, "test": 100}, {"train": 160, "val": 60, "test": 60},
                         "steadier metrics; a few minutes to generate"),
}


@dataclass(frozen=True)
class DemoDataset:
    """One dataset of the demo: a name, what it holds, and how it is stored."""

    name: str
    modality: str
    media_type: str
    source_format: str  # folder | zip | tar | tar.gz | parquet
    parquet_encoding: str = "bytes"  # bytes | struct | base64, parquet only

    @property
    def yaml_source_format(self) -> str:
        return "tar" if self.source_format == "tar.gz" else self.source_format


DATASETS = (
    DemoDataset("cam-photos", "image", "real", "folder"),
    DemoDataset("phone-archive", "image", "real", "zip"),
    DemoDataset("diffusion-gallery", "image", "synthetic", "folder"),
    DemoDataset("gan-samples", "image", "synthetic", "parquet", "bytes"),
    DemoDataset("inpainted-photos", "image", "semisynthetic", "tar"),
    DemoDataset("face-edits", "image", "semisynthetic", "parquet", "base64"),
    DemoDataset("cam-clips", "video", "real", "folder"),
    DemoDataset("dashcam-clips", "video", "real", "tar.gz"),
    DemoDataset("t2v-clips", "video", "synthetic", "folder"),
    DemoDataset("i2v-clips", "video", "synthetic", "parquet", "struct"),
    DemoDataset("region-edit-clips", "video", "semisynthetic", "zip"),
    DemoDataset("inpainted-clips", "video", "semisynthetic", "folder"),
)


@dataclass(frozen=True)
class ImageRecipe:
    height: int
    width: int
    fmt: ImageFormat


@dataclass(frozen=True)
class VideoRecipe:
    height: int
    width: int
    frames: int
    fps: int
    fmt: VideoFormat


JPEG_90 = ImageFormat("JPEG", ".jpg", options=(("quality", 90),))
PNG = ImageFormat("PNG", ".png", options=(("compress_level", 1),))
H264_MP4 = VideoFormat("mp4", ".mp4", "libx264", (("crf", "20"), ("preset", "ultrafast")))
MPEG4_AVI = VideoFormat("avi", ".avi", "mpeg4", (("qmax", "3"),))

#: Formats most samples are stored in, chosen uniformly.
COMMON_IMAGE_FORMATS = (
    ImageFormat("JPEG", ".jpg", options=(("quality", 95),)),
    JPEG_90,
    ImageFormat("JPEG", ".jpeg", options=(("quality", 85),)),
    PNG,
    ImageFormat("WEBP", ".webp", options=(("quality", 90), ("method", 2))),
    ImageFormat("WEBP", ".webp", options=(("quality", 80), ("method", 2))),
)
COMMON_VIDEO_FORMATS = (
    H264_MP4,
    VideoFormat("mp4", ".mp4", "libx264", (("crf", "23"), ("preset", "veryfast"))),
    VideoFormat("matroska", ".mkv", "libx264", (("crf", "21"), ("preset", "superfast"))),
    MPEG4_AVI,
    VideoFormat("mp4", ".mp4", "mpeg4", (("qmax", "3"),)),
)
COMMON_ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9, 2.0)

#: What breaks pipelines; every class of every split gets each of these once.
IMAGE_EDGE_CASES = {
    "tiny odd 17x23": ImageRecipe(23, 17, PNG),
    "smallest 16x16 bmp": ImageRecipe(16, 16, ImageFormat("BMP", ".bmp")),
    "contract example 214x107": ImageRecipe(107, 214, JPEG_90),
    "lossless webp 640x360": ImageRecipe(360, 640, ImageFormat("WEBP", ".webp", options=(("lossless", True), ("method", 1)))),
    "grey jpeg": ImageRecipe(300, 400, ImageFormat("JPEG", ".jpg", "L", (("quality", 90),))),
    "grey png, odd size": ImageRecipe(333, 251, ImageFormat("PNG", ".png", "L", (("compress_level", 1),))),
    "rgba png": ImageRecipe(240, 320, ImageFormat("PNG", ".png", "RGBA", (("compress_level", 1),))),
    "rgba webp": ImageRecipe(256, 256, ImageFormat("WEBP", ".webp", "RGBA", (("quality", 90), ("method", 2)))),
    "palette png": ImageRecipe(300, 300, ImageFormat("PNG", ".png", "P", (("compress_level", 1),))),
    "palette gif": ImageRecipe(240, 360, ImageFormat("GIF", ".gif", "P")),
    "bmp": ImageRecipe(288, 352, ImageFormat("BMP", ".bmp")),
    "tiff": ImageRecipe(256, 320, ImageFormat("TIFF", ".tiff")),
    "panorama 5:1": ImageRecipe(200, 1000, JPEG_90),
    "tall 1:4": ImageRecipe(720, 180, PNG),
}
VIDEO_EDGE_CASES = {
    "single frame": VideoRecipe(256, 320, 1, 25, H264_MP4),
    "5 frames": VideoRecipe(256, 256, 5, 25, H264_MP4),
    "9 frames mpeg4": VideoRecipe(240, 320, 9, 30, MPEG4_AVI),
    "40 frames": VideoRecipe(224, 400, 40, 30, H264_MP4),
    "qcif 176x144": VideoRecipe(144, 176, 16, 15, MPEG4_AVI),
    "tiny 48x32": VideoRecipe(32, 48, 16, 25, H264_MP4),
    "wide mkv": VideoRecipe(240, 426, 20, 24, VideoFormat("matroska", ".mkv", "libx264", (("crf", "21"), ("preset", "superfast")))),
    "portrait mov": VideoRecipe(426, 240, 16, 30, VideoFormat("mov", ".mov", "libx264", (("crf", "22"), ("preset", "veryfast")))),
    "mpeg4 in mkv": VideoRecipe(288, 352, 16, 25, VideoFormat("matroska", ".mkv", "mpeg4", (("qmax", "4"),))),
}


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset as written: where, how, and how much."""

    split: str
    dataset: DemoDataset
    path: Path  # the dataset folder, or the one archive or parquet file in it
    samples: int
    bytes: int


@dataclass
class DemoDataSummary:
    """What `generate_demo_data` wrote."""

    out: Path
    seed: int
    size: str
    modality: str
    datasets: list[DatasetRecord] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, split: str | None = None, modality: str | None = None, media_type: str | None = None) -> int:
        return sum(
            record.samples
            for record in self.datasets
            if split in (None, record.split)
            and modality in (None, record.dataset.modality)
            and media_type in (None, record.dataset.media_type)
        )

    @property
    def total_bytes(self) -> int:
        return sum(record.bytes for record in self.datasets)


def generate_demo_data(out: Path, seed: int = 0, size: str = "small", modality: str = "both", force: bool = False,
                       workers: int = 1, show_progress: bool = True) -> DemoDataSummary:
    """Write the demo dataset under `out`; refuse to replace an earlier one unless `force`.

    `workers` processes draw and encode samples (0: one per CPU core); the files do
    not depend on it. More than one spawns processes, so a calling script needs the
    usual `if __name__ == "__main__":` guard; the default, 1, works in this process.
    """
    preset = _choice("--size", size, SIZES)
    modalities = _choice("--modality", modality, MODALITY_CHOICES)
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {seed}", "pass a non-negative integer such as --seed 0")
    if workers < 0:
        raise UsageError(f"--workers must be 0 (one per core) or more, got {workers}", "pass --workers 0")
    out = Path(out)
    _clear_previous(out, force)

    summary = DemoDataSummary(out=out, seed=seed, size=size, modality=modality)
    jobs = [
        SampleJob(size, seed, split, dataset, index)
        for split in SPLITS
        for dataset in DATASETS
        if dataset.modality in modalities
        for index in _dataset_indices(preset, split, dataset)
    ]
    started = time.perf_counter()
    marker = out / INCOMPLETE_MARKER
    marker.write_text("`kit data demo` was stopped before it finished: the splits here are partial.\n"
                      "Regenerate with `kit data demo --out <this folder> --force`.\n", encoding="utf-8")
    with _progress(show_progress) as progress, _sample_pool(workers or os.cpu_count() or 1) as pool_map:
        task = progress.add_task("demo data", total=len(jobs))
        samples = zip(jobs, pool_map(make_sample, jobs))
        for (split, dataset), group in itertools.groupby(samples, key=lambda pair: (pair[0].split, pair[0].dataset)):
            progress.update(task, description=f"{split}/{dataset.media_type}/{dataset.name}")
            members = []
            for _, member in group:
                members.append(member)
                progress.advance(task)
            folder = out / split / dataset.media_type / dataset.name
            source = write_dataset(folder, dataset.name, dataset.source_format, members, dataset.parquet_encoding)
            size_on_disk = sum(len(data) for _, data in members) if source.is_dir() else source.stat().st_size
            summary.datasets.append(DatasetRecord(split, dataset, source, len(members), size_on_disk))
    summary.seconds = time.perf_counter() - started
    for split in SPLITS:
        _write_split_yaml(summary, split)
    (out / "README.txt").write_text(readme_text(summary), encoding="utf-8")
    marker.unlink()
    return summary


def is_complete(out: Path) -> bool:
    """Whether `out` holds a finished `kit data demo` run of this version (README written, no INCOMPLETE marker)."""
    readme = Path(out) / "README.txt"
    return (readme.is_file() and not (Path(out) / INCOMPLETE_MARKER).exists()
            and f"demo data version {DATA_VERSION}" in readme.read_text(encoding="utf-8"))


@contextlib.contextmanager
def _sample_pool(workers: int) -> Iterator[Callable]:
    """An ordered `map` over `workers` processes (in this process when 1). Spawned, not forked:
    the caller may hold threads (PyTorch, onnxruntime) that a fork would copy mid-flight."""
    if workers == 1:
        yield map
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield functools.partial(pool.map, chunksize=2)


def _choice(option: str, value: str, table: dict) -> object:
    if value in table:
        return table[value]
    close = difflib.get_close_matches(value, list(table), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"choose one of: {', '.join(table)}"
    raise UsageError(f"unknown {option} {value!r}", hint)


def _clear_previous(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file", "give a folder to write the demo data into")
    ours = [out / name for name in (*SPLITS, "README.txt", INCOMPLETE_MARKER)]
    existing = [path for path in ours if path.exists()]
    if existing and not force:
        raise OutputExistsError(existing[0])
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not show,
    )


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _class_key(split: str, modality: str, media_type: str) -> tuple[int, int, int]:
    return SPLITS.index(split), MODALITIES.index(modality), MEDIA_TYPES.index(media_type)


def _class_datasets(modality: str, media_type: str) -> list[DemoDataset]:
    return [d for d in DATASETS if d.modality == modality and d.media_type == media_type]


def _dataset_indices(preset: SizePreset, split: str, dataset: DemoDataset) -> list[int]:
    """The class-wide sample indices that land in `dataset` (round robin over the class's datasets)."""
    siblings = _class_datasets(dataset.modality, dataset.media_type)
    count = preset.per_class(dataset.modality, split)
    return list(range(siblings.index(dataset), count, len(siblings)))


@functools.lru_cache(maxsize=64)
def class_recipes(size: str, seed: int, split: str, modality: str, media_type: str) -> tuple[ImageRecipe | VideoRecipe, ...]:
    """Every sample's recipe for one class of one split: all edge cases, then common draws, shuffled."""
    rng = _rng(seed, *_class_key(split, modality, media_type), 1_000_003)
    edge_cases = list((IMAGE_EDGE_CASES if modality == "image" else VIDEO_EDGE_CASES).values())
    count = SIZES[size].per_class(modality, split)
    recipes = edge_cases[:count] + [_common_recipe(rng, modality) for _ in range(count - len(edge_cases))]
    return tuple(recipes[i] for i in rng.permutation(len(recipes)))


def _common_recipe(rng: np.random.Generator, modality: str) -> ImageRecipe | VideoRecipe:
    aspect = float(rng.choice(COMMON_ASPECTS))
    portrait = rng.random() < 0.3
    if modality == "image":
        short = int(rng.integers(224, 449))
        long = int(short * aspect)
        height, width = (long, short) if portrait else (short, long)
        return ImageRecipe(height, width, COMMON_IMAGE_FORMATS[int(rng.integers(len(COMMON_IMAGE_FORMATS)))])
    short = int(rng.choice((224, 240, 256, 288)))
    aspect = min(aspect, 16 / 9)  # clips stop at 16:9: wider ones only cost encoding time
    long = int(short * aspect) // 2 * 2
    height, width = (long, short) if portrait else (short, long)
    return VideoRecipe(height, width, int(rng.integers(16, 21)), int(rng.choice((24, 25, 30))),
                       COMMON_VIDEO_FORMATS[int(rng.integers(len(COMMON_VIDEO_FORMATS)))])


@dataclass(frozen=True)
class SampleJob:
    """Everything that decides one sample's bytes."""

    size: str
    seed: int
    split: str
    dataset: DemoDataset
    index: int  # within the dataset's class, not the dataset


def make_sample(job: SampleJob) -> tuple[str, bytes]:
    """(file name, file bytes) of one sample; a pure function of the job."""
    dataset = job.dataset
    recipe = class_recipes(job.size, job.seed, job.split, dataset.modality, dataset.media_type)[job.index]
    rng = _rng(job.seed, *_class_key(job.split, dataset.modality, dataset.media_type), job.index)
    if isinstance(recipe, ImageRecipe):
        data = encode_image(content.image(rng, dataset.media_type, recipe.height, recipe.width), recipe.fmt)
    else:
        data = encode_video(content.clip(rng, dataset.media_type, recipe.height, recipe.width, recipe.frames), recipe.fmt, recipe.fps)
    return f"{dataset.name}-{job.index:04d}{recipe.fmt.suffix}", data


def _write_split_yaml(summary: DemoDataSummary, split: str) -> None:
    split_dir = summary.out / split
    records = [record for record in summary.datasets if record.split == split]
    if not records:
        return
    entries = []
    for record in records:
        entry = {
            "name": record.dataset.name,
            "modality": record.dataset.modality,
            "media_type": record.dataset.media_type,
            "path": record.path.relative_to(split_dir).as_posix(),
            "source_format": record.dataset.yaml_source_format,
            "samples": record.samples,
        }
        if record.dataset.source_format == "parquet":
            entry.update(media_column="media", media_encoding=record.dataset.parquet_encoding, filename_column="filename")
        entries.append(entry)
    document = {"split": split, "seed": summary.seed, "size": summary.size, "datasets": entries}
    (split_dir / "datasets.yaml").write_text(
        "# Written by `kit data demo`; paths are relative to this file.\n" + yaml.safe_dump(document, sort_keys=False),
        encoding="utf-8",
    )


def readme_text(summary: DemoDataSummary) -> str:
    """A plain-text summary of the counts, for people who open the folder."""
    lines = [
        "SN34 kit demo data",
        f"written by `kit data demo --seed {summary.seed} --size {summary.size} --modality {summary.modality}`"
        f" (demo data version {DATA_VERSION})",
        "",
        "Generated media, not real photos or videos: 'real' = smooth scenes with sensor noise,",
        "'synthetic' = the same scenes over-smoothed with a periodic generator trace (and flicker in clips),",
        "'semisynthetic' = real media with a generated patch over 25-50% of the central square (the validator's crop).",
        "",
        f"{'split':<6} {'modality':<9} {'real':>6} {'synthetic':>10} {'semisynthetic':>14}",
    ]
    for split in SPLITS:
        for modality in MODALITIES:
            counts = [summary.count(split, modality, media_type) for media_type in MEDIA_TYPES]
            if any(counts):
                lines.append(f"{split:<6} {modality:<9} {counts[0]:>6} {counts[1]:>10} {counts[2]:>14}")
    lines += ["", "Datasets (per split, listed in <split>/datasets.yaml):"]
    seen = []
    for record in summary.datasets:
        if record.dataset not in seen:
            seen.append(record.dataset)
            lines.append(f"  {record.dataset.media_type}/{record.dataset.name}  {record.dataset.modality}, {record.dataset.source_format}")
    lines += ["", "Bench a detector on the held-out split:  kit bench <model> --data <this folder>/test", ""]
    return "\n".join(lines)
