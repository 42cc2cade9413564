"""``sightglass import``: back-fill metrics files into a data directory."""

from __future__ import annotations

import gzip
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from sightglass.config import Config
from sightglass.ingest.importer import ImportError_, import_files
from sightglass.store.base import StoreError
from sightglass.store.duckdb import DuckDBStore

err = Console(stderr=True)


def _size(p: Path) -> int:
    try:
        if p.suffix == ".gz":
            with p.open("rb") as f:  # gzip keeps the size mod 2^32 in its trailer: good enough for a bar
                f.seek(-4, 2)
                return int.from_bytes(f.read(4), "little") or p.stat().st_size
        return p.stat().st_size
    except OSError:
        return 0


def register(cli: click.Group) -> None:
    @cli.command("import")
    @click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "--data",
        type=click.Path(file_okay=False),
        envvar="SIGHTGLASS_DATA",
        default=None,
        help="Data directory [default: ./sightglass-data].",
    )
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["auto", "openmetrics", "prometheus"]),
        default="auto",
        help="openmetrics: timestamps in seconds, ends with # EOF; prometheus: timestamps in ms.",
    )
    def import_cmd(files: tuple[Path, ...], data: str | None, fmt: str) -> None:
        """Back-fill OpenMetrics / Prometheus text files that carry timestamps (.gz too)."""
        config = Config.load(None, data=data)
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise click.ClickException(f"no such file: {', '.join(missing)}")
        total = sum(_size(f) for f in files)
        om = None if fmt == "auto" else fmt == "openmetrics"
        try:
            with (
                DuckDBStore(config.data) as store,
                Progress(
                    TextColumn("[bold]importing"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=False,
                ) as progress,
            ):
                task = progress.add_task("import", total=total or None)
                stats = import_files(
                    store, list(files), openmetrics=om, on_bytes=lambda n: progress.advance(task, n)
                )
        except (ImportError_, StoreError, gzip.BadGzipFile) as e:
            raise click.ClickException(str(e)) from None
        err.print(
            f"[green]imported[/] {stats.samples:,} samples, {stats.new_series:,} new series from {stats.files} "
            f"file(s) in {stats.seconds:.1f}s ({stats.samples_per_second:,.0f} samples/s) into {config.data}"
        )
