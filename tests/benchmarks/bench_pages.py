"""Episode page benchmark: a 3-hour room's page, built and loaded in headless chromium.

Run by hand (it is not part of the test suite):

    .venv/bin/python tests/benchmarks/bench_pages.py [--hours 3] [--words 30000] [--speakers 6] [--rounds 3]

The transcript is synthetic (words at a speaking pace, turns of 5-90 s among the speakers); the replay is a
low-bitrate MP3 of the same length, so the player reads real metadata. Prints the time to build the page, the
sizes of the HTML and of the word times, and (median over rounds, fresh browser context each) the time until the
HTML is parsed (DOMContentLoaded), until the load event and until the script marks the page ready (word times
fetched, highlighting and seeking live), with the ratio to the 2 s target.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from feeds.page_publish import publish_episode_page  # noqa: E402
from storage.objects import LocalStore  # noqa: E402
from storage.records import AssetRecord, EpisodeRecord, PersonRecord, ShowRecord  # noqa: E402
from workers.serve import make_server  # noqa: E402

TARGET_S = 2.0
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VOCABULARY = ("audio room replay speaker level noise microphone track people listen podcast chapter word time "
              "question answer really think product shipping because about would could great point").split()


def synthetic_words(hours: float, count: int, speakers: list[str], seed: int = 3) -> list[dict[str, object]]:
    rng = random.Random(seed)
    duration = hours * 3600
    step = duration / count
    words: list[dict[str, object]] = []
    t, speaker, turn_end = 0.5, speakers[0], rng.uniform(5, 90)
    while len(words) < count:
        if t > turn_end:
            speaker = rng.choice([s for s in speakers if s != speaker])
            turn_end = t + rng.uniform(5, 90)
            t += rng.uniform(0.2, 1.0)
        length = step * rng.uniform(0.5, 0.9)
        text = rng.choice(VOCABULARY) + ("." if rng.random() < 0.08 else "")
        words.append({"start": round(t, 3), "end": round(t + length, 3), "text": text, "speaker": speaker,
                      "probability": 0.9})
        t += step * rng.uniform(0.8, 1.2)
    return words


def build(folder: Path, hours: float, count: int, speaker_count: int) -> tuple[LocalStore, str, float]:
    store = LocalStore(folder)
    prefix = "shows/bench/episodes/three-hours/"
    names = {f"s{n}": f"Speaker {n + 1}" for n in range(speaker_count)}
    words = synthetic_words(hours, count, list(names))
    duration = hours * 3600
    replay = folder / "replay-src.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", str(duration),
                    "-c:a", "libmp3lame", "-b:a", "8k", str(replay)], check=True)
    chapters = [{"startTime": float(m * 600), "title": f"Part {m + 1}"} for m in range(int(duration // 600))]
    assets = [store.put_file(prefix + "replay.mp3", replay),
              store.put_bytes(prefix + "words.json", json.dumps({"version": 1, "language": "en", "speakers": names,
                                                                  "words": words}).encode()),
              store.put_bytes(prefix + "chapters.json",
                              json.dumps({"version": "1.2.0", "chapters": chapters}).encode())]
    replay.unlink()
    episode = EpisodeRecord(
        id="three-hours", show="bench", title="A three-hour room", description="Synthetic words.", visibility="public",
        guid="bench", status="published", recorded_at=datetime(2026, 11, 1, tzinfo=UTC), duration_s=duration,
        assets=tuple(AssetRecord(a.key.rsplit("/", 1)[1], a.key, a.size, a.content_type, a.md5) for a in assets),
        persons=tuple(PersonRecord(n, "speaker") for n in names.values()))
    show = ShowRecord(id="bench", title="Bench", author="roomcast", owner_name="roomcast",
                      owner_email="bench@example.invalid", description="")
    started = time.perf_counter()
    key = publish_episode_page(store, show, episode)
    return store, key, time.perf_counter() - started


def measure(url: str, rounds: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(rounds):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(url, wait_until="load")
            deadline = time.monotonic() + 30
            while page.evaluate("() => document.documentElement.getAttribute('data-ready')") is None:
                if time.monotonic() > deadline:
                    raise SystemExit("the page never became ready")
                time.sleep(0.01)
            timing = page.evaluate("""() => {
                const n = performance.getEntriesByType('navigation')[0];
                return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd,
                        ready: Number(document.documentElement.getAttribute('data-ready')),
                        words: document.querySelectorAll('.turns .words > span').length,
                        highlight: document.documentElement.classList.contains('words-ready') ? 1 : 0};
            }""")
            results.append({k: float(v) for k, v in timing.items()})
            context.close()
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--words", type=int, default=30_000)
    parser.add_argument("--speakers", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        store, key, build_s = build(Path(tmp), args.hours, args.words, args.speakers)
        html = (Path(tmp) / key).stat().st_size
        times = (Path(tmp) / key).with_name("word-times.json").stat().st_size
        server = make_server(Path(tmp), port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/{key}"
        try:
            rounds = measure(url, args.rounds)
        finally:
            server.shutdown()
    print(f"room: {args.hours:g} h, {args.words} words, {args.speakers} speakers")
    print(f"page built in {build_s:.2f} s; HTML {html / 1e6:.2f} MB, word times {times / 1e6:.2f} MB")
    assert all(r["words"] == args.words and r["highlight"] for r in rounds), rounds
    for name, label in (("dcl", "HTML parsed (DOMContentLoaded)"), ("load", "load event"),
                        ("ready", "interactive (script ready)")):
        median = statistics.median(r[name] for r in rounds) / 1000
        print(f"{label:32} {median:6.3f} s   ratio to the {TARGET_S:g} s target: {median / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
