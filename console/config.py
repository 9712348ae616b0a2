"""Console settings: the ``console:`` section, beside the ``evidence:`` section it shares with
the alerting (the same store and secret: what the alerting signs, the console verifies)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from alerting.config import AlertingServiceSettings


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="interface to bind; loopback only by default")
    port: int = Field(8090, ge=0, le=65535, description="0: any free port (the chosen one is logged)")


class ConsoleServiceSettings(AlertingServiceSettings):
    console: ConsoleSettings = ConsoleSettings()
