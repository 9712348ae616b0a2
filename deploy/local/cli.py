"""``skysentry stack up|down|status``: the local Kafka + Redis of deploy/local/stack.py.

A typer sub-app; skysentry/cli.py mounts it as ``stack``. Runs on its own as well:
``python -m deploy.local.cli up``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from deploy.local import stack

app = typer.Typer(
    name="stack",
    help="The local stack: a real Apache Kafka broker (KRaft) and Redis on 127.0.0.1.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

StateDir = Annotated[
    Optional[Path],
    typer.Option("--state-dir", help="Where pids, ports, data and logs live (default: ./.skysentry/stack)."),
]


@app.command()
def up(
    state_dir: StateDir = None,
    kafka_port: Annotated[Optional[int], typer.Option(
        help="Kafka's port (default: the recorded one, else 19092 if free; 0: any free port).")] = None,
    redis_port: Annotated[Optional[int], typer.Option(
        help="Redis's port (default: the recorded one, else 16379 if free; 0: any free port).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server to answer.")] = stack.READY_TIMEOUT_S,
    brokers: Annotated[Optional[int], typer.Option(
        min=1, help="Kafka nodes: 3 starts a KRaft cluster on free ports (replication factor 3, "
                    "min.insync.replicas 2; set SKYSENTRY_TOPICS__REPLICATION_FACTOR=3 for the topics) "
                    "(default: what the state dir has, else 1).")] = None,
) -> None:
    """Start Kafka and Redis (or reuse running ones) and wait until both answer."""
    started = time.monotonic()
    try:
        with console.status("starting Kafka and Redis (the first run downloads Kafka's jars)..."):
            info = stack.up(state_dir, kafka_port=kafka_port, redis_port=redis_port, timeout_s=timeout,
                            brokers=brokers)
    except stack.StackError as exc:
        err_console.print(f"[bold red]stack up failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    _print_status(stack.status(state_dir))
    console.print(f"ready in {time.monotonic() - started:.1f} s. For other shells:", highlight=False)
    console.print(f"  export KAFKA_BOOTSTRAP_SERVERS={info.bootstrap_servers}", highlight=False, soft_wrap=True)
    console.print(f"  export REDIS_URL={info.redis_url}", highlight=False, soft_wrap=True)


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop the servers this state dir started (data and ports are kept for the next `up`)."""
    try:
        stack.down(state_dir)
    except stack.StackError as exc:
        err_console.print(f"[bold red]stack down failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    _print_status(stack.status(state_dir))


@app.command()
def status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show whether Kafka and Redis run, their pids and addresses; exit 1 when one is down."""
    st = stack.status(state_dir)
    if as_json:
        doc = {"state_dir": str(st.state_dir), "running": st.running,
               **{s.name: {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()}
                  for s in (*st.services, *st.nodes)}}
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print_status(st)
    if not st.running:
        raise typer.Exit(1)


def _print_status(st: stack.StackStatus) -> None:
    table = Table(title=f"SkySentry local stack ({st.state_dir})", title_justify="left")
    table.add_column("service")
    table.add_column("state", no_wrap=True)
    table.add_column("pid")
    table.add_column("address", no_wrap=True)
    table.add_column("log", overflow="fold")
    for s in (st.kafka, *st.nodes, st.redis):
        state = "[green]running[/]" if s.running else "[red]stopped[/]"
        if s.external:
            state += " (external)"
        table.add_row(s.name, state, str(s.pid or "-"), s.address or "-", str(s.log) if s.log else "-")
    console.print(table)


if __name__ == "__main__":
    app()
