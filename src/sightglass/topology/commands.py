"""``sightglass topology {entities,show,deps,path,import}``: the graph from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from sightglass.topology.graph import Topology, entity_dict

_DATA = click.option(
    "--data",
    type=click.Path(file_okay=False),
    envvar="SIGHTGLASS_DATA",
    default="./sightglass-data",
    show_default=True,
    help="Data directory.",
)
_TIME = click.option(
    "--time", "at", default=None, help="As of this time (RFC 3339 or Unix s) [default: newest]."
)


@contextmanager
def _topology(data: str) -> Iterator[Topology]:
    from sightglass.store.duckdb import DuckDBStore
    from sightglass.topology.infer import TopologyBuilder

    if not Path(data).exists():
        raise click.ClickException(f"no data directory {data}")
    with DuckDBStore(data) as store:
        b = TopologyBuilder()
        topo = b.update(store)
        b.persist(store)
        yield topo


def _at(at: str | None) -> int | None:
    from sightglass.timeutil import parse_time_ms

    return parse_time_ms(at) if at else None


def _echo(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=1, sort_keys=True))


@click.group()
def topology() -> None:
    """The factory's entities and how they depend on each other."""


@topology.command()
@_DATA
@click.option("--kind", default=None, help="Only this kind (gpu, node, pod, job, model...).")
def entities(data: str, kind: str | None) -> None:
    """List entities (and counts per kind on stderr)."""
    with _topology(data) as topo:
        for e in topo.entities(kind):
            click.echo(f"{e.kind}\t{e.id}")
        click.echo(json.dumps(topo.kinds()), err=True)


@topology.command()
@_DATA
@_TIME
@click.argument("entity_id")
def show(data: str, at: str | None, entity_id: str) -> None:
    """One entity, its owner and its relations."""
    with _topology(data) as topo:
        e = topo.entity(entity_id)
        if e is None:
            raise click.ClickException(f"no entity {entity_id!r}")
        t = _at(at)
        _echo(
            {
                **entity_dict(e),
                "owner": topo.owner(entity_id, t),
                "relations": [r.to_dict() for r in topo.neighbours(entity_id, t)],
            }
        )


@topology.command()
@_DATA
@_TIME
@click.option("--reverse", is_flag=True, help="What depends on it (dependents) instead.")
@click.argument("entity_id")
def deps(data: str, at: str | None, reverse: bool, entity_id: str) -> None:
    """What an entity depends on, transitively (with --reverse: its dependents)."""
    with _topology(data) as topo:
        if topo.entity(entity_id) is None:
            raise click.ClickException(f"no entity {entity_id!r}")
        found = topo.dependents(entity_id, _at(at)) if reverse else topo.depends_on(entity_id, _at(at))
        for i, d in found.items():
            click.echo(f"{d}\t{i}")


@topology.command()
@_DATA
@_TIME
@click.argument("src")
@click.argument("dst")
def path(data: str, at: str | None, src: str, dst: str) -> None:
    """A shortest path between two entities."""
    with _topology(data) as topo:
        steps = topo.path(src, dst, _at(at))
        if steps is None:
            raise click.ClickException(f"no path from {src!r} to {dst!r}")
        for s in steps:
            arrow = f"--{s.kind}-->" if s.forward else f"<--{s.kind}--"
            click.echo(f"{s.src} {arrow} {s.dst}")


@topology.command("import")
@_DATA
@click.argument("inventory", type=click.Path(exists=True, dir_okay=False))
def import_inventory(data: str, inventory: str) -> None:
    """Store racks, switches and storage from an inventory file (the simulator's factory.json)."""
    from sightglass.store.duckdb import DuckDBStore
    from sightglass.topology.infer import TopologyBuilder

    with DuckDBStore(data) as store:
        b = TopologyBuilder()
        b.add_inventory(json.loads(Path(inventory).read_text()))
        b.update(store)
        n_ent, n_rel = b.persist(store)
    click.echo(f"stored {n_ent} entities, {n_rel} relations", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(topology)
