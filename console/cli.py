"""``skysentry console``: run the operator console under uvicorn until SIGTERM/SIGINT;
``skysentry console hash-password``: print a password hash for ``SKYSENTRY_CONSOLE__USERS``.
Mounted by ``skysentry/cli.py``; also ``python -m console``."""

from __future__ import annotations

import contextlib
import getpass
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from skysentry.config import ConfigError

app = typer.Typer(help="The operator console.", add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True)


class Action(str, Enum):
    serve = "serve"
    hash_password = "hash-password"


@app.command("console")
def console_cmd(
    action: Annotated[Action, typer.Argument(help="serve (the default): run the console; hash-password: read a "
                                             "password (prompt, or one line on stdin) and print the hash for "
                                             "SKYSENTRY_CONSOLE__USERS (name:hash).")] = Action.serve,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config with `evidence:`, "
                                                   "`alerting:` and `console:` sections (default: $SKYSENTRY_CONFIG)."
                                                   )] = None,
    host: Annotated[Optional[str], typer.Option(help="Interface to bind (default: console.host, 127.0.0.1). Beyond "
                                                "loopback it needs SKYSENTRY_CONSOLE__TOKEN or __USERS.")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: console.port, 8090; 0: any free one).")] = None,
    user: Annotated[Optional[str], typer.Option(help="hash-password: print name:hash for this user.")] = None,
) -> None:
    """The operator console: live wall, alerts with evidence (acknowledge, silence), silences and
    health, on http://127.0.0.1:8090 by default. Beyond loopback it refuses to start without
    credentials from the environment (SKYSENTRY_CONSOLE__TOKEN, SKYSENTRY_CONSOLE__USERS)."""
    if action is Action.hash_password:
        _hash_password(user)
        return
    import uvicorn

    from console.app import Console as ConsoleApp
    from console.auth import CredentialsError, ExposureError, check_exposure
    from console.config import ConsoleServiceSettings
    from skysentry.logs import setup_logging

    try:
        settings = ConsoleServiceSettings.load(config)
    except (ValidationError, ConfigError, FileNotFoundError) as exc:
        err.print(f"[bold red]bad configuration:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    setup_logging(settings.log.level, settings.log.json_format)
    c = settings.console
    bind = host or c.host
    try:
        console = ConsoleApp(settings)
        check_exposure(bind, console.credentials)
    except (CredentialsError, ExposureError) as exc:
        err.print(f"[bold red]console not started:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    from skysentry.metrics import serve_metrics

    serve_metrics(settings.metrics)  # /metrics, /livez, /readyz on the metrics port, like every service
    # access_log off: a request line carries an evidence link's signature
    config = uvicorn.Config(console.app(), host=bind, port=c.port if port is None else port, log_config=None,
                            access_log=False, server_header=False, timeout_graceful_shutdown=3)
    _server(config, on_exit=console.hub.close).run()


def _hash_password(user: str | None) -> None:
    from console.auth import CredentialsError, hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            err.print("[bold red]the passwords differ[/]")
            raise typer.Exit(2)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        encoded = hash_password(password)
    except CredentialsError as exc:
        err.print(f"[bold red]{exc}[/]")
        raise typer.Exit(2) from None
    print(f"{user}:{encoded}" if user else encoded)


def _server(config, on_exit=lambda: None):
    """uvicorn's server, except that SIGTERM/SIGINT end the command with status 0 after the
    graceful stop (uvicorn re-raises the signal afterwards, so the process died of it), and the
    event streams end at once (browsers reconnect to whatever serves next)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            on_exit()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)
