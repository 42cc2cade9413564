"""``sightglass backends``: check the scale-out backends and show how replicas share the work."""

from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.table import Table

from sightglass.config import Config, ConfigError

console = Console()


def attach_config(config: Config, url: str) -> Config:
    """``config`` with its metrics read-only on the Prometheus-compatible server at ``url``."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--attach needs an http:// or https:// URL, got {url!r}")
    if (config.backends or {}).get("metrics"):
        raise ConfigError("--attach and [backends] metrics are both set; use one")
    backends = dict(config.backends or {})
    backends["metrics"] = {"kind": "prometheus", "url": url.rstrip("/")}
    return config.model_copy(update={"backends": backends})


def register(cli: click.Group) -> None:
    config_option = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), envvar="SIGHTGLASS_CONFIG",
        default=None, help="TOML config file with a [backends] section.",
    )  # fmt: skip

    @cli.group()
    def backends() -> None:
        """Scale-out backends: a Prometheus-compatible TSDB and PostgreSQL."""

    @backends.command("check")
    @config_option
    @click.option("--attach", default=None, metavar="URL", help="Check this Prometheus instead.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def check(config_file: str | None, attach: str | None, as_json: bool) -> None:
        """Connect to the configured backends and report what they hold."""
        from sightglass.scaleout.store import open_scaleout

        config = Config.load(config_file)
        if attach:
            config = attach_config(config, attach)
        t0 = time.perf_counter()
        store = open_scaleout(config)
        if store is None:
            raise click.ClickException("no [backends] metrics configured: this is the embedded store")
        try:
            store.refresh(force=True)
            info = {**store.stats(), "seconds": round(time.perf_counter() - t0, 3)}
        finally:
            store.close()
        if as_json:
            click.echo(json.dumps(info))
            return
        table = Table(show_header=False)
        for k, v in info.items():
            table.add_row(k, str(v))
        console.print(table)

    @backends.command("leases")
    @config_option
    def leases(config_file: str | None) -> None:
        """Show which replica owns which analytics partition, and how far each has got."""
        from sightglass.scaleout.config import load_backends
        from sightglass.scaleout.leases import PgLeases
        from sightglass.scaleout.service import TASK
        from sightglass.store.postgres import PostgresCatalog

        b = load_backends(Config.load(config_file).backends)
        if b.catalog.kind != "postgres" or not b.catalog.dsn:
            raise click.ClickException(
                'leases live in PostgreSQL: set [backends] catalog = {kind="postgres", dsn=...}'
            )
        cat = PostgresCatalog(b.catalog.dsn)
        try:
            rows = PgLeases.__new__(PgLeases)
            rows.catalog, rows.task = cat, TASK
            table = Table("partition", "owner", "epoch", "expires in", "watermark")
            for r in PgLeases.table(rows):
                exp = r["expires_in_ms"]
                table.add_row(str(r["part"]), r["owner"] or "-", str(r["epoch"]),
                              f"{exp / 1000:.1f}s" if r["owner"] and exp is not None else "-", str(r["watermark_ms"]))  # fmt: skip
            console.print(table)
        finally:
            cat.close()
