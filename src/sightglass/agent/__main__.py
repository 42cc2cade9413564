"""``python -m sightglass.agent``: the agent without the rest of the CLI.

``sightglass agent`` works too, but the full CLI imports every feature's commands (the store, the
analytics...) before it runs one; the node daemon should not carry them. This entry point imports
only the agent, and ``sightglass agent`` re-executes itself through it when it starts the daemon.
"""

from __future__ import annotations

import click

from sightglass.agent.commands import register


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def _root() -> None:
    """The Sightglass node agent."""


register(_root)
agent_cli = _root.commands["agent"]


def main() -> None:
    agent_cli(prog_name="python -m sightglass.agent")


if __name__ == "__main__":
    main()
