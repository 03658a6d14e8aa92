"""What the ``roomcast`` commands share: the progress display and the settings and context a command runs with."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from workers.config import Settings


class StageDisplay:
    """Stage lines and a progress bar on stderr; a bar only when stderr is a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.stage = ""
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_draw = 0.0

    def __call__(self, episode_id: str, stage: str, fraction: float | None) -> None:
        if self.quiet:
            return
        if stage != self.stage:
            if self.tty and self.stage:
                click.echo("", err=True)
            self.stage = stage
            click.echo(f"[{time.monotonic() - self.started:6.1f}s] {episode_id}: {stage}", err=True,
                       nl=not self.tty)
        if self.tty and fraction is not None and time.monotonic() - self.last_draw > 0.2:
            self.last_draw = time.monotonic()
            filled = int(fraction * 30)
            click.echo(f"\r[{time.monotonic() - self.started:6.1f}s] {episode_id}: {stage} "
                       f"[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}", err=True, nl=False)


def settings_of(ctx: click.Context) -> Settings:
    """The settings the ``roomcast`` group loaded (``--config``, the environment)."""
    return ctx.obj["settings"]


def context_of(ctx: click.Context) -> Any:
    """The store and catalog of the command's settings."""
    from workers.context import Context

    return Context.of(settings_of(ctx))
