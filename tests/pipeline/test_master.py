"""Mastering's parts, each on its own: the FFMETADATA its tags and chapters travel in, the correction a file that
missed the target gets for its next pass, and the stream copy that tags (and re-tags) an encoded file without
touching its audio. The whole render against independent meters is in ``test_mix.py``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

from pipeline.chapters import Chapter
from pipeline.errors import MediaError
from pipeline.loudness import LoudnessReport
from pipeline.master import (
    STEREO_TARGET_LUFS,
    TRUE_PEAK_MARGIN_DB,
    FormatState,
    Labels,
    MasterSettings,
    Tags,
    encoder_args,
    ffmetadata,
    retag,
    tag_and_measure,
    untagged,
)


def test_ffmetadata_escapes_what_would_end_a_value_and_rounds_chapters_to_milliseconds() -> None:
    text = ffmetadata(Tags("Q&A = ship; #1\nnow", "Zoë \\ Ana", "Show"),
                      [Chapter(0.0, 12.3456, "Intro; = #", "s0"), Chapter(12.3456, 30.0, "שלום 🎙", "s1")])
    lines = text.splitlines()
    assert lines[0] == ";FFMETADATA1"
    assert "title=Q&A \\= ship\\; \\#1\\" in lines and "now" in lines  # the newline escaped, on its own line
    assert "artist=Zoë \\\\ Ana" in lines
    assert lines.count("[CHAPTER]") == 2 and "START=0" in lines and "END=12346" in lines and "START=12346" in lines
    assert "title=Intro\\; \\= \\#" in lines and "title=שלום 🎙" in lines


def _report(lufs: float, peak: float) -> LoudnessReport:
    return LoudnessReport(lufs, 5.0, peak)


def test_a_file_on_target_is_accepted_and_a_miss_corrects_the_next_pass() -> None:
    settings = MasterSettings()  # -19 LUFS mono, -1 dBTP, 0.4 LU tolerance
    state = FormatState("mp3", gain=6.0, limiter=-2.0)
    assert state.judge(1, _report(-19.2, -1.5), settings, "room 'r'") and state.notes == []
    state = FormatState("mp3", gain=6.0, limiter=-2.0)
    assert not state.judge(1, _report(-19.9, -1.5), settings, "room 'r'")  # 0.9 LU short: louder next time
    assert state.gain == pytest.approx(6.9) and state.limiter == -2.0 and "gain corrected by +0.90" in state.notes[0]
    state = FormatState("m4a", gain=6.0, limiter=-2.5)
    assert not state.judge(1, _report(-19.0, -0.6), settings, "room 'r'")  # peaks over the ceiling
    ceiling = settings.true_peak_db - TRUE_PEAK_MARGIN_DB
    assert state.limiter == pytest.approx(-2.5 - (-0.6 - ceiling) - 0.2) and "limiter lowered" in state.notes[0]
    failure = state.failure(_report(-19.0, -0.6), settings, "room 'r'")
    assert isinstance(failure, MediaError) and "room 'r'" in str(failure) and "m4a" in str(failure)
    assert MasterSettings(channels=2).target == STEREO_TARGET_LUFS


def _packets(path: Path) -> str:
    """The audio packets' checksums, as a stream copy would write them (tags and chapters left out)."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy", "-f", "framemd5",
                           "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("fmt", ["mp3", "m4a"])
def test_tagging_and_retagging_keep_the_audio_and_carry_the_labels(tmp_path: Path, fmt: str) -> None:
    settings = MasterSettings()
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=6:sample_rate=44100"]
    path = tmp_path / f"replay.{fmt}"
    subprocess.run(["ffmpeg", "-v", "error", *encoder_args(tone, untagged(path), fmt, -12.0, -2.0, settings)],
                   check=True)
    first = Labels.written(tmp_path, Tags("First title", "Ana", "Show", comment="About shipping", language="en"),
                           [Chapter(0.0, 3.0, "One", "s0"), Chapter(3.0, 6.0, "Two", "s1")], None)
    report = tag_and_measure(untagged(path), first, path, fmt, settings, what="room 'r'")
    assert -40 < report.integrated_lufs < -10 and report.true_peak_dbtp <= -1.0
    (tmp_path / "again").mkdir()
    second = Labels.written(tmp_path / "again", Tags("Corrected title", "Ana Lima", "Show"),
                            [Chapter(0.0, 2.0, "Uno", "s0"), Chapter(2.0, 6.0, "Dos", "s1")], None)
    again = tmp_path / f"again.{fmt}"
    retag(path, second, again, fmt, what="room 'r'")
    assert _packets(path) == _packets(again)
    if fmt == "mp3":
        tags = ID3(again)
        assert str(tags["TIT2"]) == "Corrected title" and str(tags["TPE1"]) == "Ana Lima"
        assert sorted(str(c.sub_frames["TIT2"]) for c in tags.getall("CHAP")) == ["Dos", "Uno"]
        assert [str(c) for c in ID3(path).getall("COMM")] == ["About shipping"]  # the first file's comment
    else:
        mp4 = MP4(again)
        assert mp4.tags["\xa9nam"] == ["Corrected title"]
        assert [c.title for c in mp4.chapters] == ["Uno", "Dos"]
