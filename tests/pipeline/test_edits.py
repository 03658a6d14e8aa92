"""The pure edit logic: spans, the timeline after cuts, words, chapters and the edited audio stream."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.chapters import Chapter
from pipeline.edit_audio import edited_blocks
from pipeline.edits import (
    BLEEP_TEXT,
    EditRequest,
    Span,
    edit_chapters,
    edit_transcript,
    mute_spans,
    parse_span,
    parse_time,
    resolve,
)
from pipeline.errors import InvalidEdit
from pipeline.transcript import Segment, Transcript, Word


def test_times_and_spans_parse() -> None:
    assert parse_time("12.5") == 12.5 and parse_time("1:02.5") == 62.5 and parse_time("1:00:03") == 3603.0
    assert parse_span("0:01:00-0:01:10.5") == Span(60.0, 70.5)
    for bad in ("12", "a-b", "10-5"):
        with pytest.raises(InvalidEdit):
            parse_span(bad)


def test_later_cuts_are_on_the_clock_of_the_replay_as_published_then() -> None:
    state = resolve(100.0, ["a"], [EditRequest(cuts=(Span(10, 20),)), EditRequest(cuts=(Span(5, 15),))], "ep")
    # the second cut (5-15 after the first) is 5-10 and 20-25 of the first run's replay
    assert state.timeline == (Span(0, 5), Span(25, 100)) and state.current_duration == 80
    assert state.to_current(30.0) == 10.0 and state.to_current(22.0) is None


@pytest.mark.parametrize("request_, message", [
    (EditRequest(remove_speakers=("x",)), "unknown speaker 'x'"),
    (EditRequest(cuts=(Span(90, 101),)), "outside the replay"),
    (EditRequest(cuts=(Span(1, 5), Span(4, 6))), "overlap"),
    (EditRequest(bleep_spans=(Span(-1, 2),)), "outside the replay"),
    (EditRequest(title="  "), "title cannot be empty"),
])
def test_bad_edits_are_refused(request_: EditRequest, message: str) -> None:
    with pytest.raises(InvalidEdit, match=message):
        resolve(100.0, ["a", "b"], [request_], "episode 'ep'")


def _transcript() -> Transcript:
    words_a = (Word(1.0, 1.4, "Hello", "a"), Word(1.5, 2.0, "Darn!", "a"), Word(30.0, 30.5, "later", "a"))
    words_b = (Word(12.0, 12.5, "secret", "b"), Word(40.0, 40.5, "bye", "b"))
    return Transcript("en", (Segment("a", words_a[:2]), Segment("b", words_b[:1]), Segment("a", words_a[2:]),
                             Segment("b", words_b[1:])), {"a": "Ann", "b": "Bo"})


def test_words_are_removed_bleeped_cut_and_shifted() -> None:
    state = resolve(60.0, ["a", "b"], [EditRequest(remove_speakers=("b",), bleep_words=("darn",),
                                                   cuts=(Span(10, 20),))], "ep")
    edited, tones = edit_transcript(_transcript(), state)
    assert [(w.text, w.start) for w in edited.words] == [("Hello", 1.0), (BLEEP_TEXT, 1.5), ("later", 20.0)]
    assert "b" not in edited.speaker_names
    assert len(tones) == 1 and tones[0].start < 1.5 < 2.0 < tones[0].end


def test_chapters_of_a_removed_speaker_merge_and_later_ones_move() -> None:
    chapters = [Chapter(0, 10, "Ann", "a"), Chapter(10, 30, "Bo", "b"), Chapter(30, 45, "Ann", "a"),
                Chapter(45, 60, "Cy", "c")]
    state = resolve(60.0, ["a", "b", "c"], [EditRequest(remove_speakers=("b",), cuts=(Span(40, 42),))], "ep")
    edited = edit_chapters(chapters, state, None, {"a": "Ann", "c": "Cy"})
    assert [(c.start, c.end, c.speaker) for c in edited] == [(0.0, 43.0, "a"), (43.0, 58.0, "c")]


def test_a_speaker_heard_on_a_track_not_theirs_is_muted() -> None:
    words = [Word(1.0, 2.0, "x", "b"), Word(5.0, 6.0, "y", "b"), Word(8.0, 9.0, "z", "a")]
    assert mute_spans(words, {"b"}, {"b": [Span(0.0, 3.0)]}) == (Span(4.96, 6.04),)


def test_the_edited_stream_is_exactly_shorter_with_tone_and_silence() -> None:
    rate = 8000
    ramp = np.arange(10 * rate, dtype=np.float32) / (10 * rate) + 0.5
    blocks = (ramp[i:i + 5000] for i in range(0, ramp.size, 5000))
    state = resolve(10.0, ["a"], [EditRequest(cuts=(Span(2.0, 3.0), Span(6.0, 7.5)))], "ep")
    out = np.concatenate(list(edited_blocks(blocks, rate, state, tones=[Span(0.5, 1.0)], mutes=[Span(8.0, 8.5)])))
    assert out.size == 10 * rate - int(2.5 * rate)
    assert np.allclose(out[int(2.1 * rate):3 * rate], ramp[int(3.1 * rate):4 * rate])  # from 3.0 s on
    join = out[2 * rate - 200:2 * rate + 200]
    assert np.abs(np.diff(join)).max() < 0.01  # a smooth join, not the 0.1 step a butt join makes
    tone = out[int(0.6 * rate):int(0.9 * rate)]
    spectrum = np.abs(np.fft.rfft(tone))
    assert abs(np.argmax(spectrum) * rate / tone.size - 1000) < 5
    assert np.abs(out[int(5.5 * rate) + 50:int(6.0 * rate) - 50]).max() == 0.0  # 8.0-8.5 s, after 2.5 s of cuts
