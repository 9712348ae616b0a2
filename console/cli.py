"""``skysentry console``: run the console (evidence links, health) under uvicorn until
SIGTERM/SIGINT. Mounted by ``skysentry/cli.py``; also ``python -m console``."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from skysentry.config import ConfigError

app = typer.Typer(help="The operator console.", add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True)


@app.command("console")
def console_cmd(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config with `evidence:` and "
                                                   "`console:` sections (default: $SKYSENTRY_CONFIG).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Interface to bind (default: console.host, 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: console.port, 8090; 0: any free one).")] = None,
) -> None:
    """Serve alert evidence by signed links (/evidence/...) and /healthz."""
    import uvicorn

    from console.app import build_app
    from console.config import ConsoleServiceSettings
    from skysentry.logs import setup_logging

    try:
        settings = ConsoleServiceSettings.load(config)
    except (ValidationError, ConfigError, FileNotFoundError) as exc:
        err.print(f"[bold red]bad configuration:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    setup_logging(settings.log.level, settings.log.json_format)
    c = settings.console
    # access_log off: a request line carries its link's signature
    config = uvicorn.Config(build_app(settings.evidence), host=host or c.host, port=c.port if port is None else port,
                            log_config=None, access_log=False, server_header=False)
    _server(config).run()


def _server(config):
    """uvicorn's server, except that SIGTERM/SIGINT end the command with status 0 after the
    graceful stop (uvicorn re-raises the signal afterwards, so the process died of it)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)
