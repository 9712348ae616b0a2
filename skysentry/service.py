"""The shape every long-running service shares: one ``run(stop)`` coroutine, stopped
gracefully on SIGTERM/SIGINT (DESIGN §9)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a fresh event loop; SIGTERM/SIGINT set ``stop``, and a second
    signal cancels the task outright."""

    async def _runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def _on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                log.warning("second %s: cancelling", sig.name)
                task.cancel()
            else:
                log.info("%s: shutting down gracefully", sig.name)
                stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig)
        await main(stop)

    try:
        asyncio.run(_runner())
    except asyncio.CancelledError:
        pass
