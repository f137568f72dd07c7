"""A disk cache of preprocessed pixels, so re-benching (or re-training) on the same data skips decoding.

Each entry is the exact uint8 tensor the pipeline would feed the model for one sample
(`[3,H,W]` or `[T,3,H,W]`), or the `DecodeError` that dropped it. An entry is found by
two digests:

* the **recipe**: everything besides the media bytes that decides the pixels — the
  whole profile record, modality, H×W, T, frame rate, the preparing function's name and
  the source of it and of the decode/preprocess modules, and `decoder_versions()`.
  Changing any of them gives a new recipe, so stale pixels are never reused;
* the **media**: sha256 of the sample's bytes (archive and parquet members are hashed as
  read). A file's digest is remembered under its path, device, inode, size, mtime and
  ctime, so a cached rerun does not read whole large files again; any change to the
  file (ctime cannot be set back) makes it hash afresh.

Layout under the cache folder (default `~/.cache/sn34-kit/pixels`, `$XDG_CACHE_HOME`
respected, `$KIT_CACHE_DIR` replaces `~/.cache/sn34-kit`)::

    pixels/CACHEDIR.TAG
    pixels/<recipe digest>/recipe.json               # what the recipe was, for `kit cache info`
    pixels/<recipe digest>/<ab>/<media digest>.npy   # the pixels (numpy's .npy: header, then raw uint8)
    pixels/<recipe digest>/<ab>/<media digest>.err   # {"reason", "detail"[, "kind", "shape"]} of a dropped sample
    pixels/files/<ab>/<file key>                     # a file's remembered sha256

Entries are written to a temporary name in the same folder and renamed into place
(`os.replace`), so an interrupted run never leaves a partial entry under a real name;
an entry that still fails to load (or has the wrong shape) counts as a miss and is
deleted. Reading an entry refreshes its mtime, and the cache is trimmed oldest-first to
90 % of its size limit (`$KIT_CACHE_SIZE`, default 10 GiB) whenever a write takes it over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from discriminator.errors import UsageError
from validator_sim import decode, preprocess
from validator_sim.decode import DecodeError, DecordChannelClip, MediaSource, decoder_versions
from validator_sim.prepare import prepare_sample
from validator_sim.profiles import Profile

#: Bumped when the on-disk layout changes; part of every recipe. 2: error entries keep a decord channel clip's kind
#: (format-1 entries had lost it, so a cached ONNX-era rerun scored the datasets the evaluator lost).
CACHE_FORMAT = 2
#: The kit's own preparing function, as a recipe names it: recipes of any other `validator_sim` function are
#: an older kit's (the function lived in validator_sim.run before), and never read again.
KIT_PREPARE_FUNCTION = f"{prepare_sample.__module__}.{prepare_sample.__qualname__}"
#: `kind` of an error entry for a `DecordChannelClip`.
DECORD_CHANNELS = "decord-channels"
DEFAULT_LIMIT_BYTES = 10 * 1024**3
#: A trim brings the cache down to this fraction of its limit, so it is not rescanned after every write.
TRIM_TO = 0.9
#: Temporary files older than this are leftovers of a killed process and are removed by a trim.
STALE_TEMP_S = 3600.0
#: An entry's mtime is refreshed on a hit only when older than this, to spare metadata writes.
TOUCH_AFTER_S = 60.0
PIXELS_SUFFIX = ".npy"
ERROR_SUFFIX = ".err"
RECIPE_NAME = "recipe.json"
TAG_NAME = "CACHEDIR.TAG"
#: Folder of remembered file digests.
FILES_DIR = "files"
TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
            "# sn34-kit pixel cache: preprocessed samples for kit bench / kit train. Safe to delete.\n")
_DIGEST_KEY = re.compile(r"[0-9a-f]{32}")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1024**3, "gib": 1024**3, "t": 1024**4, "tb": 1024**4, "tib": 1024**4}

Prepared = np.ndarray | DecodeError
PrepareFn = Callable[[MediaSource], Prepared]


def parse_size(text: str) -> int:
    """Bytes from `10G`, `512MiB`, `2.5 GB` or a plain number (units are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise UsageError(f"cache size {text!r} is not a size", "write it like 10G, 500M or 2.5GiB")
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size < 1:
        raise UsageError(f"cache size {text!r} is zero", "pass a positive size, or --no-cache to bypass the cache")
    return size


def format_size(size: int) -> str:
    """`123 B`, `4.5 MiB`, `10.0 GiB`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def default_cache_dir() -> Path:
    """`$KIT_CACHE_DIR/pixels`, else `$XDG_CACHE_HOME/sn34-kit/pixels`, else `~/.cache/sn34-kit/pixels`."""
    if os.environ.get("KIT_CACHE_DIR"):
        return Path(os.environ["KIT_CACHE_DIR"]).expanduser() / "pixels"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "sn34-kit" / "pixels"


def default_limit_bytes() -> int:
    """`$KIT_CACHE_SIZE` when set, else 10 GiB."""
    text = os.environ.get("KIT_CACHE_SIZE")
    if not text:
        return DEFAULT_LIMIT_BYTES
    try:
        return parse_size(text)
    except UsageError as exc:
        raise UsageError(f"$KIT_CACHE_SIZE: {exc.message}", exc.hint) from None


def cache_disabled_by_env() -> bool:
    """`KIT_NO_CACHE=1` turns the cache off for every command (`kit bench --no-cache` does it for one run)."""
    return os.environ.get("KIT_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


@lru_cache(maxsize=None)
def _code_digest(function_source: str) -> str:
    """sha256 of a preparing function's source and of the modules whose code decides its pixels."""
    digest = hashlib.sha256(function_source.encode())
    for module in (decode, preprocess):
        digest.update(Path(inspect.getfile(module)).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class PixelRecipe:
    """Everything besides the media bytes that decides a sample's pixels; its digest names a cache folder."""

    modality: str
    height: int
    width: int
    #: Frames per clip (video only).
    frames: int | None
    frame_rate: float | None
    #: The profile record, field by field.
    profile: dict[str, Any]
    #: `module.qualname` of the function that turns media bytes into the tensor.
    function: str
    #: sha256 of that function's source and of validator_sim/decode.py and preprocess.py.
    code: str
    decoders: dict[str, str]
    format: int = CACHE_FORMAT

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.modality == "image":
            return (3, self.height, self.width)
        assert self.frames is not None
        return (self.frames, 3, self.height, self.width)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:32]

    def describe(self) -> str:
        frames = f" T={self.frames}" if self.frames else ""
        rate = f" at {self.frame_rate:g} fps" if self.frame_rate else ""
        return f"{self.profile.get('name', '?')} {self.modality} {self.height}×{self.width}{frames}{rate}"


def pixel_recipe(function: Callable[..., Any], profile: Profile, modality: str, height: int, width: int,
                 frames: int | None, frame_rate: float | None, modules: tuple[ModuleType, ...] = ()) -> PixelRecipe:
    """The recipe of samples prepared by `function` under `profile` for a model taking `modality` at H×W (×T);
    `modules` are further modules whose code decides the pixels (e.g. the robustness chain's), hashed with it."""
    source = inspect.getsource(function) + "".join(inspect.getsource(module) for module in modules)
    return PixelRecipe(
        modality=modality, height=height, width=width, frames=frames if modality == "video" else None,
        frame_rate=frame_rate, profile=json.loads(json.dumps(dataclasses.asdict(profile), default=str)),
        function=f"{function.__module__}.{function.__qualname__}",
        code=_code_digest(source), decoders=decoder_versions(),
    )


def _staleness(recipe: "PixelRecipe") -> str:
    """Why this kit would never read `recipe` again, or "" (a recipe of the kit's own sample preparation only)."""
    if recipe.format != CACHE_FORMAT:
        return f"cache format {recipe.format}"
    installed = decoder_versions()
    changed = sorted(k for k in set(recipe.decoders) | set(installed) if recipe.decoders.get(k) != installed.get(k))
    if changed:
        return f"other {', '.join(changed)}"
    if recipe.function.startswith("validator_sim.") and (recipe.function != KIT_PREPARE_FUNCTION
                                                         or recipe.code != _current_code_digest()):
        return "another kit's code"
    return ""


@lru_cache(maxsize=1)
def _current_code_digest() -> str:
    return _code_digest(inspect.getsource(prepare_sample))


@lru_cache(maxsize=64)
def npy_header(shape: tuple[int, ...]) -> bytes:
    """The exact .npy header `np.lib.format.write_array` puts before a C-ordered uint8 array of `shape`."""
    out = io.BytesIO()
    np.lib.format.write_array(out, np.zeros(shape, dtype=np.uint8), allow_pickle=False)
    written = out.getvalue()
    return written[:len(written) - math.prod(shape)]


def media_digest(source: MediaSource) -> str:
    """sha256 of a sample's bytes (a path is read from disk). Raises OSError for an unreadable file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    with open(source, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass
class CacheStats:
    """What one process did with the cache."""

    hits: int = 0
    misses: int = 0
    #: Hits that were cached decode errors.
    error_hits: int = 0
    stored: int = 0
    bytes_stored: int = 0
    evicted: int = 0
    #: Entries found damaged (cut short, wrong shape) and deleted.
    damaged: int = 0
    #: Why writing stopped (disk full, permissions), if it did.
    write_failure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RecipeUsage:
    """One recipe folder, as `kit cache info` lists it."""

    description: str
    entries: int
    errors: int
    size: int
    last_used: float
    #: The first characters of the recipe's digest (its folder's name), to tell rows with one description apart.
    digest: str = ""
    #: Why no run of this kit reads this recipe any more ("" while it is current).
    stale: str = ""


@dataclass(frozen=True)
class CacheInfo:
    """What `kit cache info` prints."""

    location: Path
    limit: int
    entries: int
    errors: int
    #: Bytes on disk, remembered file digests included.
    size: int
    #: Files whose sha256 is remembered, so a rerun does not read them whole.
    remembered_files: int = 0
    recipes: list[RecipeUsage] = field(default_factory=list)


class PixelCache:
    """Preprocessed samples on disk, bounded in size; safe to share between threads and processes."""

    def __init__(self, root: Path | str | None = None, limit_bytes: int | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.limit_bytes = default_limit_bytes() if limit_bytes is None else limit_bytes
        if self.limit_bytes < 1:
            raise UsageError(f"cache size must be positive, got {self.limit_bytes}", "pass e.g. --cache-size 10G")
        self.stats = CacheStats()
        self._lock = threading.Lock()
        #: Bytes on disk as last scanned plus what this process wrote since; None until the first write.
        self._usage: int | None = None
        self._ready_recipes: set[str] = set()

    # -- entries -------------------------------------------------------------------------------------

    def _entry_base(self, recipe: PixelRecipe, digest: str) -> Path:
        return self.root / recipe.digest / digest[:2] / digest

    def lookup(self, recipe: PixelRecipe, digest: str) -> Prepared | None:
        """The cached pixels or DecodeError of a sample; None on a miss.

        Read into memory rather than memory-mapped: a mapping holds a file descriptor, and `kit train`
        keeps every sample of a split until it stacks them.
        """
        base = self._entry_base(recipe, digest)
        pixels_path = base.with_suffix(PIXELS_SUFFIX)
        header = npy_header(recipe.sample_shape)
        size = len(header) + math.prod(recipe.sample_shape)
        try:
            with open(pixels_path, "rb") as handle:
                buffer = np.empty(size + 1, dtype=np.uint8)  # one byte more, to see a file that is too long
                read = handle.readinto(memoryview(buffer))
        except (FileNotFoundError, NotADirectoryError):
            return self._lookup_error(base.with_suffix(ERROR_SUFFIX))
        except OSError:
            return self._drop_damaged(pixels_path)
        # The entry must be exactly what `store` writes for this recipe's shape: the .npy header, then the pixels.
        # Comparing bytes (not np.load) also keeps ast.literal_eval out of the decode threads: CPython 3.11 before
        # 3.11.8 can raise "SystemError: AST constructor recursion depth mismatch" when two threads parse at once.
        if read != size or buffer[:len(header)].tobytes() != header:
            return self._drop_damaged(pixels_path)
        pixels = buffer[len(header):size].reshape(recipe.sample_shape)
        self._touch(pixels_path)
        with self._lock:
            self.stats.hits += 1
        return pixels

    def _lookup_error(self, path: Path) -> DecodeError | None:
        try:
            record = json.loads(path.read_text())
            if record.get("kind") == DECORD_CHANNELS:  # the run drops its dataset's later batches: keep the type
                error: DecodeError = DecordChannelClip(tuple(int(d) for d in record["shape"]))
            else:
                error = DecodeError(str(record["reason"]), str(record.get("detail", "")))
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self.stats.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return self._drop_damaged(path)
        self._touch(path)
        with self._lock:
            self.stats.hits += 1
            self.stats.error_hits += 1
        return error

    def _drop_damaged(self, path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass
        with self._lock:
            self.stats.damaged += 1
            self.stats.misses += 1
        return None

    @staticmethod
    def _touch(path: Path) -> None:
        try:
            if time.time() - path.stat().st_mtime > TOUCH_AFTER_S:
                os.utime(path)
        except OSError:
            pass

    def store(self, recipe: PixelRecipe, digest: str, value: Prepared) -> None:
        """Write one sample's pixels or decode error atomically; a failing disk turns writing off, not the run."""
        if self.stats.write_failure is not None:
            return
        base = self._entry_base(recipe, digest)
        if isinstance(value, DecodeError):
            path = base.with_suffix(ERROR_SUFFIX)
            record: dict[str, Any] = {"reason": value.reason, "detail": value.detail}
            if isinstance(value, DecordChannelClip):
                record.update(kind=DECORD_CHANNELS, shape=list(value.shape))
            payload: bytes | None = json.dumps(record).encode()
            size = len(payload)
        else:
            if value.shape != recipe.sample_shape or value.dtype != np.uint8:
                raise ValueError(f"pixels of shape {value.shape} {value.dtype} do not fit recipe {recipe.describe()}")
            path, payload, size = base.with_suffix(PIXELS_SUFFIX), None, value.nbytes + 128
        if size > self.limit_bytes:
            return
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self._prepare_recipe_dir(recipe)
            path.parent.mkdir(exist_ok=True)
            with open(temp, "wb") as handle:
                if payload is not None:
                    handle.write(payload)
                else:
                    np.lib.format.write_array(handle, np.ascontiguousarray(value), allow_pickle=False)
            os.replace(temp, path)
        except OSError as exc:
            _discard(temp)
            with self._lock:
                self.stats.write_failure = f"{exc.strerror or exc} ({exc.filename or self.root})"
            return
        except BaseException:
            _discard(temp)
            raise
        with self._lock:
            self.stats.stored += 1
            self.stats.bytes_stored += size
            self._usage = self._scan_usage() if self._usage is None else self._usage + size
            over = self._usage > self.limit_bytes
        if over:
            self.trim()

    def _prepare_recipe_dir(self, recipe: PixelRecipe) -> None:
        if recipe.digest in self._ready_recipes:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tag = self.root / TAG_NAME
        if not tag.exists():
            tag.write_text(TAG_TEXT)
        folder = self.root / recipe.digest
        folder.mkdir(exist_ok=True)
        recipe_path = folder / RECIPE_NAME
        if not recipe_path.exists():
            temp = folder / f".{RECIPE_NAME}.{os.getpid()}.{threading.get_ident()}.tmp"
            temp.write_text(recipe.to_json())
            os.replace(temp, recipe_path)
        self._ready_recipes.add(recipe.digest)

    def digest(self, source: MediaSource) -> str:
        """`media_digest(source)`; for a file, remembered under its identity and times. Raises OSError if unreadable."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            return media_digest(source)
        info = os.stat(source)
        identity = (f"{os.path.realpath(source)}\0{info.st_dev}\0{info.st_ino}\0{info.st_size}\0"
                    f"{info.st_mtime_ns}\0{info.st_ctime_ns}")
        key = hashlib.sha256(identity.encode()).hexdigest()[:32]
        memo = self.root / FILES_DIR / key[:2] / key
        try:
            remembered = memo.read_text()
            if re.fullmatch(r"[0-9a-f]{64}", remembered):
                return remembered
        except OSError:
            pass
        digest = media_digest(source)
        if self.stats.write_failure is None:
            temp = memo.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                memo.parent.mkdir(parents=True, exist_ok=True)
                temp.write_text(digest)
                os.replace(temp, memo)
            except OSError:
                _discard(temp)
        return digest

    def cached(self, prepare: PrepareFn, recipe: PixelRecipe) -> PrepareFn:
        """`prepare` behind the cache: the same result for every payload, decoded only on a miss.

        Pixels come back C-contiguous on a miss as on a hit: consumers may depend on memory layout
        (torch picks convolution kernels by it, and their float sums differ in the last bit).
        """

        def prepare_cached(payload: MediaSource) -> Prepared:
            try:
                digest = self.digest(payload)
            except OSError:  # unreadable now, perhaps not later: `prepare` reports it, uncached
                return prepare(payload)
            hit = self.lookup(recipe, digest)
            if hit is not None:
                return hit
            value = _contiguous(prepare(payload))
            self.store(recipe, digest, value)
            return value

        return prepare_cached

    # -- size ----------------------------------------------------------------------------------------

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, bytes on disk, path) of every entry and remembered file digest; removes temporary files
        left by killed processes."""
        found: list[tuple[float, int, Path]] = []
        if not self.root.is_dir():
            return found
        now = time.time()
        for folder in self.root.iterdir():
            if not (_is_recipe_dir(folder) or (folder.name == FILES_DIR and folder.is_dir())):
                continue
            for shard in folder.iterdir():
                if not shard.is_dir():
                    if shard.name.endswith(".tmp"):
                        _remove_if_stale(shard, now)
                    continue
                for entry in os.scandir(shard):
                    try:
                        info = entry.stat()
                    except OSError:
                        continue
                    if entry.name.endswith(".tmp"):
                        _remove_if_stale(Path(entry.path), now)
                    elif entry.name.endswith((PIXELS_SUFFIX, ERROR_SUFFIX)) or _DIGEST_KEY.fullmatch(entry.name):
                        # What the file takes on disk: a 64-byte remembered digest still fills a block.
                        found.append((info.st_mtime, max(info.st_size, getattr(info, "st_blocks", 0) * 512),
                                      Path(entry.path)))
        return found

    def _scan_usage(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def trim(self, limit_bytes: int | None = None) -> int:
        """Delete least recently used entries until at most 90 % of the limit is held (when over it); returns how many."""
        limit = self.limit_bytes if limit_bytes is None else limit_bytes
        with self._lock:
            entries = sorted(self._entries())
            total = sum(size for _, size, _ in entries)
            removed = 0
            if total > limit:
                target = int(limit * TRIM_TO)
                for _, size, path in entries:
                    if total <= target:
                        break
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        pass
                    except OSError:
                        continue
                    total -= size
                    removed += 1
            self._usage = total
            self.stats.evicted += removed
        return removed

    # -- kit cache info | clear ------------------------------------------------------------------------

    def info(self) -> CacheInfo:
        """Location, limit and what the cache holds, per recipe (most recently used first)."""
        by_recipe: dict[Path, list[tuple[float, int, Path]]] = {}
        everything = self._entries()
        for entry in everything:
            by_recipe.setdefault(entry[2].parent.parent, []).append(entry)
        remembered = by_recipe.pop(self.root / FILES_DIR, [])
        recipes = []
        for folder, entries in by_recipe.items():
            try:
                recipe = PixelRecipe(**json.loads((folder / RECIPE_NAME).read_text()))
                description, stale = recipe.describe(), _staleness(recipe)
            except (OSError, ValueError, TypeError):  # a killed first write: its entries are still read by digest
                description, stale = f"{folder.name} (unreadable recipe)", ""
            recipes.append(RecipeUsage(
                description=description, entries=len(entries),
                errors=sum(1 for _, _, p in entries if p.suffix == ERROR_SUFFIX),
                size=sum(size for _, size, _ in entries), last_used=max(mtime for mtime, _, _ in entries),
                digest=folder.name[:10], stale=stale))
        recipes.sort(key=lambda r: r.last_used, reverse=True)
        return CacheInfo(location=self.root, limit=self.limit_bytes, entries=sum(r.entries for r in recipes),
                         errors=sum(r.errors for r in recipes), size=sum(size for _, size, _ in everything),
                         remembered_files=len(remembered), recipes=recipes)

    def clear(self) -> tuple[int, int]:
        """Delete every entry and remembered digest (only folders this cache names); returns (samples, bytes) removed."""
        entries = self._entries()
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if _is_recipe_dir(folder) or (folder.name == FILES_DIR and folder.is_dir()):
                    shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._usage = 0
            self._ready_recipes.clear()
        samples = sum(1 for _, _, path in entries if path.parent.parent.name != FILES_DIR)
        return samples, sum(size for _, size, _ in entries)


def _is_recipe_dir(path: Path) -> bool:
    """A folder this cache made: named by a recipe digest (its recipe.json may be missing after a kill)."""
    return path.is_dir() and _DIGEST_KEY.fullmatch(path.name) is not None


def _discard(temp: Path) -> None:
    """Remove a temporary file if it is there; a cache that cannot even do that is left as it is."""
    try:
        temp.unlink(missing_ok=True)
    except OSError:
        pass


def _remove_if_stale(temp: Path, now: float) -> None:
    """Delete a temporary file old enough that no live writer can still be filling it."""
    try:
        if now - temp.stat().st_mtime > STALE_TEMP_S:
            temp.unlink()
    except OSError:
        pass


def with_default_cache(prepare: PrepareFn, recipe: PixelRecipe) -> PrepareFn:
    """`prepare` behind the default cache (`$KIT_CACHE_DIR`, `$KIT_CACHE_SIZE`); under `KIT_NO_CACHE=1` it still
    returns C-contiguous pixels, so a run gives the same results with the cache or without it."""
    cache = open_cache()
    if cache is not None:
        return cache.cached(prepare, recipe)
    return lambda payload: _contiguous(prepare(payload))


def _contiguous(value: Prepared) -> Prepared:
    return np.ascontiguousarray(value) if isinstance(value, np.ndarray) else value


def open_cache(enabled: bool = True, size: str | None = None) -> PixelCache | None:
    """The default pixel cache (limit `size` such as "10G", else `$KIT_CACHE_SIZE`), or None when
    `enabled` is false or `KIT_NO_CACHE` is set."""
    if not enabled or cache_disabled_by_env():
        return None
    return PixelCache(limit_bytes=parse_size(size) if size is not None else None)
