"""Real servers and processes for the distributed tests, all on 127.0.0.1 with free ports: ``redis-server``,
a throwaway PostgreSQL cluster (Debian's binaries, run as the ``postgres`` user when the tests run as root), and
``roomcast worker`` processes (each in its own process group, so a test can kill one like a machine dying)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


class RedisServer:
    """``redis-server`` without persistence: a restart loses every queued message, the harshest case."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ping, 20, f"redis-server on port {self.port}", 0.1)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db)


class PostgresServer:
    """A throwaway PostgreSQL cluster in ``folder``; :attr:`url` is a SQLAlchemy URL of its ``postgres`` db."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.data = folder / "data"
        self.as_postgres: list[str] = []
        self.restore: dict[Path, int] = {}

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").exists()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://roomcast@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: the postgres user runs it in a folder it reaches
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
            for parent in [self.folder, *self.folder.parents][:-1]:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    self.restore[parent] = stat.S_IMODE(mode)
                    parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run([*self.as_postgres, str(PG_BIN / "initdb"), "-A", "trust", "-U", "roomcast", "-D",
                        str(self.data)], check=True, capture_output=True)
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*self.as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                        str(self.folder / "pg.log"), "-o", options, "-w", "start"], check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        for parent, mode in self.restore.items():
            parent.chmod(mode)


class WorkerProcess:
    """A real ``roomcast worker`` (Celery, prefork pool) in its own process group, logging to ``log``."""

    def __init__(self, name: str, folder: Path, env: Mapping[str, str], *args: str) -> None:
        self.name = name
        self.folder = folder
        self.log = folder / f"{name}.log"
        self.env = {**os.environ, **env, "ROOMCAST_CACHE_DIR": str(folder / f"{name}-cache"),
                    "ROOMCAST_WORK_DIR": str(folder / f"{name}-work"), "HF_HUB_OFFLINE": "1",
                    "PYTHONPATH": str(ROOT)}
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        command = [sys.executable, "-m", "workers.cli", "worker", "--hostname", f"{self.name}@test", *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: "ready." in self.text() or not self.alive(), timeout, f"worker {self.name} start")
        if not self.alive():
            raise RuntimeError(f"worker {self.name} exited at start:\n{self.text()[-3000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, like a machine losing power."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
