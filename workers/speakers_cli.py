"""``roomcast speakers`` (a show's voice library) and ``roomcast episode speakers`` (who spoke in an episode, and
naming them by hand), added to :mod:`workers.cli`."""

from __future__ import annotations

import click

from pipeline.errors import RoomcastError
from storage.records import SpeakerRecord
from workers.cli_common import context_of


@click.group()
def speakers() -> None:
    """A show's voice library: the prints that name the voices of its mixed recordings."""


@speakers.command("list")
@click.argument("show")
@click.pass_context
def speakers_list(ctx: click.Context, show: str) -> None:
    """The voices SHOW knows: who, whether they consented, how much speech their print is taken from."""
    from storage.voices import known_voices

    voices = known_voices(context_of(ctx).catalog, show)
    if not voices:
        click.echo(f"show {show!r} knows no voices yet: its multitrack rooms add them when published")
        return
    for v in voices:
        consent = "consented" if v.consent else "declined (silenced in mixed rooms)"
        when = v.updated_at.strftime("%Y-%m-%d") if v.updated_at else "-"
        click.echo(f"{v.speaker_id:24} {v.name[:32]:32} {v.role or '-':10} {consent:35} "
                   f"{v.speech_s:7.1f}s speech, {v.episodes} episode(s), last {v.last_episode} ({when})")


@speakers.command("forget")
@click.argument("show")
@click.argument("speaker")
@click.pass_context
def speakers_forget(ctx: click.Context, show: str, speaker: str) -> None:
    """Delete SPEAKER's voice print from SHOW's library (the row is deleted, not hidden)."""
    from storage.voices import forget_voice

    if not forget_voice(context_of(ctx).catalog, show, speaker):
        raise click.ClickException(f"show {show!r} has no voice print of {speaker!r} (roomcast speakers list "
                                   f"{show})")
    click.echo(f"show {show!r}: the voice print of {speaker!r} is deleted")


@click.command("speakers")
@click.argument("episode_id")
@click.option("--name", "names", multiple=True, metavar="SPEAKER=NAME",
              help="Name a speaker (its id or its name as published, e.g. \"Speaker 2=Ana Ruiz\"); repeatable. "
                   "The episode is published again with the names.")
@click.option("--by", default=None, help="Who names them, for the episode's history (default: the OS user).")
@click.pass_context
def episode_speakers(ctx: click.Context, episode_id: str, names: tuple[str, ...], by: str | None) -> None:
    """The speakers of EPISODE_ID; with --name, name them (a mixed recording's "Speaker 1"...)."""
    context = context_of(ctx)
    episode = context.catalog.get_episode(episode_id)
    if episode is None:
        raise click.ClickException(f"episode {episode_id!r} is not in the catalog (roomcast episode list)")
    known = context.catalog.speakers(episode_id)
    if not names:
        for s in known:
            click.echo(f"{s.id:24} {s.name[:40]:40} {s.role or '-':10} "
                       f"{'consented' if s.consent else 'declined'}")
        return
    pairs = [_resolve(pair, known) for pair in names]
    from pipeline.edits import EditRequest
    from workers.edit import edit_episode

    try:
        edit_episode(ctx.obj["settings"], episode_id, EditRequest(speaker_names=tuple(pairs)), by=by)
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    for speaker_id, name in pairs:
        click.echo(f"{episode_id}: {speaker_id} is now {name!r}")


def _resolve(pair: str, known: list[SpeakerRecord]) -> tuple[str, str]:
    """``SPEAKER=NAME`` with SPEAKER an id or a published name (case-insensitive) of one of ``known``."""
    who, sep, name = pair.partition("=")
    who, name = who.strip(), name.strip()
    if not sep or not who or not name:
        raise click.UsageError(f"--name {pair!r}: write SPEAKER=NAME, e.g. \"Speaker 2=Ana Ruiz\"")
    for s in known:
        if who == s.id or who.casefold() == s.name.casefold():
            return s.id, name
    raise click.UsageError(f"--name {pair!r}: the episode has no speaker {who!r}; its speakers are "
                           + ", ".join(f"{s.id} ({s.name})" for s in known))
