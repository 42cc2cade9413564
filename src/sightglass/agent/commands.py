"""``sightglass agent``: run the node agent; ``sightglass agent diagnose``: say what it can see here."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import click

from sightglass.config import Config


def _say(text: str) -> None:
    # plain click output: rich (only needed by diagnose) would cost the daemon ~6 MB of memory
    click.echo(text, err=True)


def _load(config_file: str | None, **overrides: Any) -> Any:
    from sightglass.agent.config import load_agent_config

    section = Config.load(config_file).agent if config_file else {}
    return load_agent_config(section, **overrides)


_common = [
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        envvar="SIGHTGLASS_CONFIG",
        help="TOML file with an [agent] section.",
    ),
    click.option("--hostname", default=None, help="Host name to report [default: this host's name]."),
    click.option(
        "--expected-gpus", type=int, default=None, help="GPUs this node should have (inventory check)."
    ),
    click.option("--procfs", default=None, help="procfs mount point [default: /proc]."),
    click.option("--sysfs", default=None, help="sysfs mount point [default: /sys]."),
]


def _with_common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


def register(cli: click.Group) -> None:
    @cli.group(invoke_without_command=True)
    @click.option(
        "--server", default=None, envvar="SIGHTGLASS_SERVER", help="Push to this Sightglass server URL."
    )
    @click.option("--listen", default=None, help="Serve /metrics on HOST:PORT instead of pushing.")
    @click.option("--interval", default=None, help="Sampling interval, e.g. 1s, 10s [default: 10s].")
    @click.option(
        "--spool-dir", default=None, help="On-disk buffer for pushes [default: ./sightglass-agent-spool]."
    )
    @click.option(
        "--spool-max-bytes",
        type=int,
        default=None,
        help="Spool size cap; the oldest data is dropped past it.",
    )
    @click.option("--once", is_flag=True, help="Collect one cycle, print it as exposition text, exit.")
    @_with_common
    @click.pass_context
    def agent(
        ctx: click.Context,
        server: str | None,
        listen: str | None,
        interval: str | None,
        spool_dir: str | None,
        spool_max_bytes: int | None,
        once: bool,
        config_file: str | None,
        hostname: str | None,
        expected_gpus: int | None,
        procfs: str | None,
        sysfs: str | None,
    ) -> None:
        """Run the node agent: GPUs (NVML), host, InfiniBand, NFS/Lustre, attribution.

        Push to a server with --server URL (buffered on disk through outages), or serve
        /metrics with --listen HOST:PORT.
        """
        if ctx.invoked_subcommand is not None:
            ctx.obj = {
                "config_file": config_file,
                "hostname": hostname,
                "expected_gpus": expected_gpus,
                "procfs": procfs,
                "sysfs": sysfs,
            }
            return
        from sightglass.agent import assemble
        from sightglass.agent.exposition import render

        cfg = _load(
            config_file,
            server=server,
            listen=listen,
            interval=interval,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            hostname=hostname,
            expected_gpus=expected_gpus,
            procfs=procfs,
            sysfs=sysfs,
        )
        if once:
            collectors, notes = assemble.build_collectors(
                cfg.model_copy(update={"server": None, "listen": None})
            )
            from sightglass.agent.runner import Agent

            col = Agent(cfg, collectors, sink=_Null()).collect_once()
            for n in notes:
                _say(f"note: {n}")
            for name, why in col.errors.items():
                _say(f"error: {name}: {why}")
            sys.stdout.write(render(col.batch()).decode())
            return
        if not cfg.server and not cfg.listen:
            raise click.UsageError("give --server URL (push) or --listen HOST:PORT (serve /metrics)")
        _lean_exec()
        _run(cfg)

    @agent.command()
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_obj
    def diagnose(obj: dict[str, Any], as_json: bool) -> None:
        """Say what the agent can see on this node, and why attribution is missing where it is."""
        from sightglass.agent.diagnose import diagnose as run_diagnose
        from sightglass.agent.diagnose import print_report

        cfg = _load(obj.get("config_file"), **{k: v for k, v in obj.items() if k != "config_file"})
        report = run_diagnose(cfg)
        if as_json:
            import json

            click.echo(json.dumps(report.to_dict(), indent=2))
        else:
            from rich.console import Console

            print_report(report, Console())


def _lean_exec() -> None:
    """From ``sightglass agent ...``, continue as ``python -m sightglass.agent ...`` (a third of the memory)."""
    if len(sys.argv) > 1 and sys.argv[1] == "agent" and os.environ.get("SIGHTGLASS_AGENT_NO_EXEC") != "1":
        os.environ["SIGHTGLASS_AGENT_NO_EXEC"] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "sightglass.agent", *sys.argv[2:]])


class _Null:
    def publish(self, col: object) -> None:
        pass


def _run(cfg: Any) -> None:
    from sightglass.agent import assemble

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asm = assemble.build(cfg)
    for n in asm.notes:
        _say(f"note: {n}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    asm.start()
    where = (
        f"pushing to {cfg.server} (spool {cfg.spool_dir})"
        if cfg.server
        else f"serving {asm.server.url}/metrics"
        if asm.server
        else ""
    )
    _say(
        f"sightglass agent on {cfg.hostname}: {len(asm.agent.collectors)} collectors every {cfg.interval}, {where}"
    )
    try:
        asm.agent.run(stop)
    finally:
        asm.stop()
