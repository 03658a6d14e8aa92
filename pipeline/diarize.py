"""Who spoke when in a mixed recording: voice windows clustered into speakers, then turns at speaker changes.

1. The windows (:mod:`pipeline.voices`, every 0.4 s of speech) are clustered by scikit-learn's agglomerative
   clustering on cosine distance with average linkage, cut at :attr:`DiarizeSettings.threshold`: the number of
   speakers is found, not given. At most :attr:`DiarizeSettings.max_cluster_windows` windows, spread over the whole
   recording, are clustered (the cost grows with the square of the count); every window is then given the nearest
   speaker, and speakers' centres are refined from all their windows.
2. Speakers heard for less than :attr:`DiarizeSettings.min_speaker_s` are folded into the nearest one (a cough or
   a burst of laughter is not a person), and speakers whose centres are at least
   :attr:`DiarizeSettings.merge_similarity` alike are merged: on long recordings the clustering leaves a few odd
   stretches of one voice apart (a 20-minute, 2-voice recording came out as 8 speakers, the extra ones within
   0.86-0.92 of a true voice, where distinct voices stay below 0.75).
3. A Viterbi pass over each window's similarity to every speaker, with a price on every change, smooths the
   sequence, so a single odd window inside a long turn does not make a turn of its own; where two people talk at
   once, the voice that dominates the windows wins.
4. Each speech region is cut where the speaker changes, halfway between the windows that disagree.

With the show's voice library, clusters that match known prints are replaced by those prints before the Viterbi
pass, so two regulars with close voices merged by the clustering are told apart again (:func:`_with_known`).

Speakers are numbered by first appearance. Words are attributed by the time of their middle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.voices import DIMENSIONS, VoiceWindows, unit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiarizeSettings:
    threshold: float = 0.2  # cosine distance between the mean voices of two groups (Resemblyzer's scale)
    max_cluster_windows: int = 2500
    min_speaker_s: float = 3.0
    change_penalty: float = 0.25  # similarity a change of speaker must win over the windows it spans
    refine_rounds: int = 3
    group_s: float = 4.0  # windows are clustered by the mean of this much consecutive speech of a region
    merge_similarity: float = 0.82  # speakers whose centres are this alike are one (two people: 0.5-0.75)


@dataclass(frozen=True)
class Turn:
    """One speaker (0-based cluster number, by first appearance) from ``start`` to ``end`` seconds."""

    start: float
    end: float
    speaker: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Diarization:
    turns: tuple[Turn, ...]
    centroids: np.ndarray  # (speakers, 256), unit length, row k for speaker k

    @property
    def speakers(self) -> int:
        return int(self.centroids.shape[0])

    def speech_s(self, speaker: int) -> float:
        return sum(t.duration for t in self.turns if t.speaker == speaker)


def diarize(windows: VoiceWindows, regions: Sequence[tuple[float, float]],
            settings: DiarizeSettings = DiarizeSettings(), *, known: np.ndarray | None = None,
            match: float = 0.8) -> Diarization:
    """Speaker turns over ``regions`` (speech, in the windows' clock) from the voice ``windows``. ``known``: the
    prints of voices the show has heard alone (rows of unit vectors); a cluster within ``match`` cosine
    similarity of several of them is split between them (see :func:`_with_known`)."""
    order = np.argsort(windows.starts, kind="stable")
    starts, ends, vectors = windows.starts[order], windows.ends[order], windows.vectors[order]
    if starts.size == 0:  # speech too short to tell a voice: one speaker, whom no print can match
        alone = tuple(Turn(a, b, 0) for a, b in sorted(regions) if b > a)
        return Diarization(alone, np.zeros((1 if alone else 0, DIMENSIONS), dtype=np.float32))
    groups = _groups(starts, regions, settings.group_s)
    labels = _cluster(vectors, groups, settings)
    centroids = _centroids(vectors, labels)
    for _ in range(settings.refine_rounds):
        labels = np.argmax(vectors @ centroids.T, axis=1)
        labels = _fold_small(vectors, labels, starts, ends, settings)
        centroids = _centroids(vectors, labels)
        labels, centroids = _merge_close(vectors, labels, centroids, settings.merge_similarity)
    if known is not None and known.size:
        labels = np.argmax(vectors @ _with_known(centroids, unit(np.asarray(known, dtype=np.float32)), match).T,
                           axis=1)
        labels = _fold_small(vectors, labels, starts, ends, settings)
        centroids = _centroids(vectors, labels)
    labels = _smooth(vectors @ centroids.T, settings.change_penalty, starts)
    labels, centroids = _by_first_appearance(labels, centroids)
    turns = _turns(regions, (starts + ends) / 2, labels)
    log.info("diarization: %d windows, %d speakers, %d turns", starts.size, centroids.shape[0], len(turns))
    return Diarization(tuple(turns), centroids)


def _groups(starts: np.ndarray, regions: Sequence[tuple[float, float]], group_s: float) -> np.ndarray:
    """A group number for every window: consecutive windows of one speech region, ``group_s`` at most."""
    bounds = np.asarray(sorted(r[0] for r in regions)) if regions else np.zeros(1)
    region = np.searchsorted(bounds, starts, side="right")
    groups = np.zeros(starts.size, dtype=np.int64)
    current, first = 0, 0
    for i in range(1, starts.size):
        if region[i] != region[i - 1] or starts[i] - starts[first] >= group_s:
            current, first = current + 1, i
        groups[i] = current
    return groups


def _cluster(vectors: np.ndarray, groups: np.ndarray, settings: DiarizeSettings) -> np.ndarray:
    """Cluster labels of every window: agglomerative clustering of the groups' mean voices (a spread-out sample
    of them on long recordings), then every window to the nearest cluster's centre."""
    from sklearn.cluster import AgglomerativeClustering

    count = int(groups.max()) + 1 if groups.size else 0
    if count < 2:
        return np.zeros(vectors.shape[0], dtype=np.int64)
    means = unit(np.stack([np.bincount(groups, weights=vectors[:, d], minlength=count)
                           for d in range(vectors.shape[1])], axis=1))
    sample = np.unique(np.linspace(0, count - 1, min(count, settings.max_cluster_windows)).round().astype(np.int64))
    clustering = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                         distance_threshold=settings.threshold)
    found = clustering.fit_predict(means[sample])
    centroids = _centroids(means[sample], found)
    return np.argmax(means @ centroids.T, axis=1)[groups]


def _with_known(centroids: np.ndarray, known: np.ndarray, match: float) -> np.ndarray:
    """The voices windows are assigned to once the show's library is known: every known print that some cluster
    matches, and every cluster that matches none. Two regulars with close voices can fall into one cluster (two
    espeak voices at 0.89 did, their cluster at 0.99 and 0.94 of their prints), while each of their windows is
    still nearest its own speaker's print (98% of them)."""
    similar = centroids @ known.T >= match
    used = known[similar.any(axis=0)]
    return np.concatenate([used, centroids[~similar.any(axis=1)]]) if used.size else centroids


def _merge_close(vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
                 similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """Speakers whose centres are at least ``similarity`` alike merged, the closest pair first."""
    labels = np.unique(labels, return_inverse=True)[1]
    while centroids.shape[0] > 1:
        scores = centroids @ centroids.T
        np.fill_diagonal(scores, -np.inf)
        a, b = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[a, b] < similarity:
            break
        labels = np.unique(np.where(labels == b, a, labels), return_inverse=True)[1]
        centroids = _centroids(vectors, labels)
    return labels, centroids


def _centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit mean vector of each label that occurs, labels renumbered 0..k-1 in place of the old ones."""
    present = np.unique(labels)
    return unit(np.stack([vectors[labels == k].mean(axis=0) for k in present]))


def _fold_small(vectors: np.ndarray, labels: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                settings: DiarizeSettings) -> np.ndarray:
    """Windows of speakers heard for less than ``min_speaker_s`` given to the nearest speaker that is not."""
    present, inverse = np.unique(labels, return_inverse=True)
    if present.size < 2:
        return inverse
    # every window stands for one hop of speech (windows overlap), the last of a region for its whole length
    spans = np.minimum(ends - starts, np.diff(starts, append=np.inf))
    heard = np.bincount(inverse, weights=spans, minlength=present.size)
    big = heard >= settings.min_speaker_s
    if big.all() or not big.any():
        return inverse
    centroids = _centroids(vectors, inverse)
    scores = vectors @ centroids.T
    scores[:, ~big] = -np.inf
    return np.where(big[inverse], inverse, np.argmax(scores, axis=1))


def _smooth(scores: np.ndarray, penalty: float, starts: np.ndarray) -> np.ndarray:
    """The most likely label sequence: the sum of similarities, less ``penalty`` per change (Viterbi)."""
    n, k = scores.shape
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    back = np.zeros((n, k), dtype=np.int64)
    total = scores[0].astype(np.float64)
    switch = np.full((k, k), penalty) - np.eye(k) * penalty
    for i in range(1, n):
        gap = starts[i] - starts[i - 1]
        cost = total[:, None] - (switch if gap < 2.0 else 0.0 * switch)  # no price across a long silence
        back[i] = np.argmax(cost, axis=0)
        total = cost[back[i], np.arange(k)] + scores[i]
    labels = np.zeros(n, dtype=np.int64)
    labels[-1] = int(np.argmax(total))
    for i in range(n - 1, 0, -1):
        labels[i - 1] = back[i, labels[i]]
    return labels


def _by_first_appearance(labels: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seen: list[int] = []
    for label in labels.tolist():
        if label not in seen:
            seen.append(label)
    mapping = np.zeros(centroids.shape[0], dtype=np.int64)
    for new, old in enumerate(seen):
        mapping[old] = new
    return mapping[labels], centroids[seen]


def _turns(regions: Sequence[tuple[float, float]], centres: np.ndarray, labels: np.ndarray) -> list[Turn]:
    """Each region cut where the label of the nearest window centre changes."""
    turns: list[Turn] = []
    for start, end in sorted(regions):
        lo, hi = np.searchsorted(centres, [start, end])
        inside = list(range(lo, hi))
        if not inside:  # too short for a window of its own: the nearest window speaks for it
            near = int(np.argmin(np.abs(centres - (start + end) / 2)))
            inside = [near]
        at = start
        for a, b in zip(inside, inside[1:], strict=False):
            if labels[a] != labels[b]:
                cut = float(min(end, max(at, (centres[a] + centres[b]) / 2)))
                _add(turns, Turn(at, cut, int(labels[a])))
                at = cut
        _add(turns, Turn(at, end, int(labels[inside[-1]])))
    return turns


def _add(turns: list[Turn], turn: Turn) -> None:
    if turn.end - turn.start <= 0:
        return
    if turns and turns[-1].speaker == turn.speaker and turn.start - turns[-1].end < 1e-6:
        turns[-1] = Turn(turns[-1].start, turn.end, turn.speaker)
    else:
        turns.append(turn)
