"""One mixed recording of a whole room (an X Space or Clubhouse replay, a LinkedIn event download): a mixed room,
``"recording": "mixed"`` with a single track at 0 s and no speaker, whose voices diarization tells apart."""

from __future__ import annotations

from pathlib import PurePosixPath

from pipeline.importers.archive import SourceFiles
from pipeline.importers.base import AUDIO_SUFFIXES, ImportPlan, PlannedTrack, probe, refuse


def plan(files: SourceFiles) -> ImportPlan:
    media = [n for n in files.names if PurePosixPath(n).suffix.lower() in AUDIO_SUFFIXES]
    if len(media) != 1:
        raise refuse(files, [f"a mixed room is one recording; found {len(media)} media files"
                             + (f" ({', '.join(media)})" if media else "")])
    probe(files, media[0])
    stem = PurePosixPath(media[0]).stem
    return ImportPlan(room_id=stem, title=stem, speakers=(),
                      tracks=(PlannedTrack((media[0],), None, 0.0, None, "the single recording"),), mixed=True)
