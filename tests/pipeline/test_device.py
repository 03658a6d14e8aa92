"""``--device``: auto takes a CUDA GPU when CTranslate2 sees one and the CPU otherwise (and the run says which);
an explicit ``cuda`` where there is none is refused with a usage error, not a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest

from pipeline.devices import CPU, CUDA, choose_device, cuda_device_count
from pipeline.errors import TranscriptionError
from tests.roomgen import truth

pytestmark = [pytest.mark.slow, pytest.mark.model]

NO_GPU = cuda_device_count() == 0


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(tmp_path / "work"), ROOMCAST_STORE=str(tmp_path / "store"),
               ROOMCAST_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    env.pop("ROOMCAST_DEVICE", None)
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def test_choose_device() -> None:
    assert choose_device("cpu") == CPU and CPU.label == "cpu/int8"
    assert choose_device("AUTO") == (CPU if NO_GPU else CUDA)
    with pytest.raises(TranscriptionError, match="unknown device 'tpu'"):
        choose_device("tpu")
    if NO_GPU:
        with pytest.raises(TranscriptionError, match="sees no CUDA device.*--device auto"):
            choose_device("cuda")
    else:
        assert choose_device("cuda") == CUDA and CUDA.label == "cuda/float16"


def test_auto_transcribes_on_what_there_is(short_room: Path, tmp_path: Path) -> None:
    done = _cli("process", str(short_room), "-q", "-j", "2", "--device", "auto", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["transcribed_on"] == (["cpu/int8"] if NO_GPU else ["cuda/float16"])
    words_key = next(k for k in summary["assets"] if k.endswith("words.json"))
    words = json.loads((tmp_path / "store" / words_key).read_text())["words"]
    turns = sorted((t for t in truth(short_room)["turns"] if t.get("consent", True)), key=lambda t: t["start"])
    wer = jiwer.wer(_words(" ".join(t["text"] for t in turns)), _words(" ".join(w["text"] for w in words)))
    assert wer <= 0.2, wer


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_clear_error(short_room: Path, tmp_path: Path) -> None:
    for command in (("process", str(short_room), "-q"), ("worker",)):
        done = _cli(*command, "--device", "cuda", tmp_path=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "sees no CUDA device" in done.stderr and "--device auto" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists()  # refused before any work
