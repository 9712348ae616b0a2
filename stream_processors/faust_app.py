"""The faust app the processors run: faust's own, with one change to how its fetcher resumes.

faust pauses fetching from a partition when the stream's queue for it is 80 % full and resumes
it when the queue drops below 40 %. When *every* partition is paused, faust-streaming 0.15's
fetcher sleeps a whole second before it looks again, however soon a queue drains. A processor
that is slower than its input (the normal state of a busy one) then idles its model for most
of that second once the queue runs dry. Here the fetcher instead waits for the first queue to
drop (at most that second), so fetching resumes as soon as there is room.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class PromptResumeConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer; a fetch that finds every partition paused waits for the first
    one to be resumed instead of sleeping a second."""

    IDLE_WAIT_S = 1.0  # faust's own pause, kept as the upper bound

    _resumed: asyncio.Event | None = None

    def on_buffer_drop(self, tp: Any) -> None:
        super().on_buffer_drop(tp)
        if self._resumed is not None:
            self._resumed.set()

    async def _wait_next_records(self, timeout: float):
        if self.flow_active and not self.app.client_only:
            if self._resumed is None:
                self._resumed = asyncio.Event()
            self._resumed.clear()  # before the check: a resume right after it still wakes us
            if not self._get_active_partitions():
                try:
                    await asyncio.wait_for(self._resumed.wait(), self.IDLE_WAIT_S)
                except asyncio.TimeoutError:
                    pass
                if not self._get_active_partitions():
                    return {}, set()  # still all paused: the caller loops back here
        return await super()._wait_next_records(timeout)


class _Transport(faust_aiokafka.Transport):
    Consumer = PromptResumeConsumer


class ProcessorApp(faust.App):
    """``faust.App`` whose consumer is :class:`PromptResumeConsumer` (the broker URL must be
    ``kafka://``, as :func:`stream_processors.runner.faust_broker` makes it)."""

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)
