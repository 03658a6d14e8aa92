"""``roomcast cost``: what the stage runs cost, per hour of room, from the catalog's record of them
(:mod:`storage.stage_runs`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from workers.cli_common import context_of

# An on-demand cloud vCPU, in US dollars per hour (AWS c7i.large: 2 vCPUs for about $0.089 an hour in us-east-1,
# late 2025); docs/deployment.md prices a fleet with it.
DEFAULT_PRICE_PER_CORE_HOUR = 0.045


@click.command()
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Only the stage runs that finished in the last DAYS days (default: all of them).")
@click.option("--price", type=click.FloatRange(min=0), default=DEFAULT_PRICE_PER_CORE_HOUR, show_default=True,
              help="What a CPU core-hour costs, in dollars.")
@click.pass_context
def cost(ctx: click.Context, days: float | None, price: float) -> None:
    """CPU the stage runs took (ingest, track, finish), per room-minute and per room-hour, and what that costs at
    PRICE per core-hour. Every run counts, failed ones and re-runs too: they are paid for. The runs are those
    `roomcast worker` processes record and those of `roomcast process` (in-process; its command's own start,
    Python and the imports, is in no stage)."""
    from storage.stage_runs import StageLog, cost_report

    since = datetime.now(UTC) - timedelta(days=days) if days is not None else None
    log = StageLog(context_of(ctx).catalog)
    runs = log.finished_since(since)
    if not runs:
        click.echo("no stage runs recorded" + (f" in the last {days:g} days" if days is not None else ""))
        return
    report = cost_report(runs, log.room_lengths(since))
    rooms = f"{report.rooms} room{'s' if report.rooms != 1 else ''}, {report.room_s / 3600:.2f} room-hours"
    if report.unknown:
        rooms += f" ({report.unknown} of unknown length, left out of the room-hours)"
    click.echo(f"stage runs from {report.first:%Y-%m-%d %H:%M} to {report.last:%Y-%m-%d %H:%M} UTC: {rooms}")
    minutes = report.room_s / 60
    click.echo(f"{'stage':8}{'runs':>6}{'failed':>8}{'CPU s':>11}{'core-hours':>12}{'CPU s per room-minute':>23}")
    rows = [(stage.point, stage.runs, stage.failed, stage.cpu_s) for stage in report.stages]
    rows.append(("all", sum(row[1] for row in rows), sum(row[2] for row in rows), report.cpu_s))
    for point, count, failed, cpu_s in rows:
        per_minute = f"{cpu_s / minutes:.2f}" if minutes > 0 else "-"
        click.echo(f"{point:8}{count:6d}{failed:8d}{cpu_s:11.1f}{cpu_s / 3600:12.4f}{per_minute:>23}")
    ratio = report.core_hours_per_room_hour()
    total = report.cpu_s / 3600 * price
    if ratio is None:
        click.echo(f"at ${price:g} per core-hour: ${total:.4f} in all (no room of known length)")
        return
    click.echo(f"core-hours per room-hour: {ratio:.4f}")
    click.echo(f"at ${price:g} per core-hour: ${ratio * price:.4f} per room-hour, ${total:.4f} in all")
