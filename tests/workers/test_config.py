"""Settings come from defaults, a TOML file, ROOMCAST_* variables and command-line overrides, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import RoomcastError
from workers.config import Settings, load_settings


def test_defaults_are_the_embedded_laptop_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.store == str(Path("roomcast-data") / "store")
    assert settings.database_url.startswith("sqlite:///")
    assert settings.model == "tiny.en"
    assert settings.shows_config is None


def test_toml_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "roomcast.toml"
    config.write_text('[roomcast]\nstore = "s3://from-toml/x"\nmodel = "base"\ncpu_threads = 2\n')
    env = {"ROOMCAST_MODEL": "small", "ROOMCAST_PUBLIC_URL": "https://cdn.example.com"}
    settings = load_settings(env=env, config_file=config, store=None, min_chapter_s=12.0)
    assert settings.store == "s3://from-toml/x"
    assert settings.model == "small"
    assert settings.cpu_threads == 2
    assert settings.public_url == "https://cdn.example.com"
    assert settings.min_chapter_s == 12.0


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('database_url = "postgresql+psycopg://u@127.0.0.1:5/x"\n')
    assert load_settings(env={"ROOMCAST_CONFIG": str(config)}).database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(("text", "needle"), [("stor = 1\n", "unknown setting"), ("store = [\n", "c.toml")])
def test_bad_config_file_is_named(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(RoomcastError, match=needle):
        load_settings(env={}, config_file=config)


def test_bad_environment_value_is_named() -> None:
    with pytest.raises(RoomcastError, match="ROOMCAST_CPU_THREADS"):
        load_settings(env={"ROOMCAST_CPU_THREADS": "many"})
    with pytest.raises(RoomcastError, match="ROOMCAST_BEAM_SIZE"):
        load_settings(env={"ROOMCAST_BEAM_SIZE": "0"})


def test_the_beam_reaches_whisper_s_settings(tmp_path: Path) -> None:
    from workers.transcription import _transcribe_settings

    config = tmp_path / "c.toml"
    config.write_text("beam_size = 2\n")
    assert _transcribe_settings(load_settings(env={})).beam_size == 5
    assert _transcribe_settings(load_settings(env={}, config_file=config)).beam_size == 2
    assert _transcribe_settings(load_settings(env={"ROOMCAST_BEAM_SIZE": "1"}, config_file=config)).beam_size == 1


def test_settings_are_frozen_and_hashable() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.model = "x"  # type: ignore[misc]
    assert hash(settings) == hash(Settings())
