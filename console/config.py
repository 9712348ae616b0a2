"""Console settings: the ``console:`` section, beside the ``alerting:`` and ``evidence:`` sections
it shares with the alerting (the same Redis prefix, silences and store; what the alerting signs,
the console verifies).

Credentials come from the environment, never the YAML file that is checked in:

* ``SKYSENTRY_CONSOLE__TOKEN`` — one shared token (``Authorization: Bearer …`` or the login form);
* ``SKYSENTRY_CONSOLE__USERS`` — ``name:pbkdf2_sha256$iterations$salt$hash`` entries separated by
  commas or new lines (``skysentry console hash-password`` makes an entry);
* ``SKYSENTRY_CONSOLE__SESSION_SECRET`` — signs session cookies; without it a random key per
  process (sessions end when the console restarts; replicas behind one address need a shared one).
"""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from alerting.config import AlertingServiceSettings
from alerting.durations import Duration


def default_client_id() -> str:
    return f"skysentry-console-{socket.gethostname()}"


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="interface to bind; loopback only by default. Any other "
                      "address needs credentials (token or users) or the console refuses to start")
    port: int = Field(8090, ge=0, le=65535, description="0: any free port (the chosen one is logged)")
    token: SecretStr | None = Field(None, description="shared access token; from the environment: "
                                    "SKYSENTRY_CONSOLE__TOKEN")
    users: SecretStr | None = Field(None, description="name:pbkdf2_sha256$iterations$salt$hash entries, comma or "
                                    "newline separated; from the environment: SKYSENTRY_CONSOLE__USERS")
    session_secret: SecretStr | None = Field(None, description="HMAC key of the session cookies (default: random "
                                             "per process); SKYSENTRY_CONSOLE__SESSION_SECRET")
    session_ttl: Duration = Field(12 * 3600.0, gt=0, description="a login lasts this long")
    cookie_secure: bool = Field(False, description="mark the session cookie Secure (also set by itself on https "
                                "requests): set it behind a TLS-terminating proxy")
    client_id: str = Field(default_factory=default_client_id, min_length=1, description="Kafka client id of the "
                           "console's readers. They join no consumer group on purpose: every console must see every "
                           "camera (a group would split the cameras between two consoles), so each reads all "
                           "partitions from their end and commits nothing")
    services: dict[str, str] = Field(default_factory=dict, description="name -> base URL of a service's metrics "
                                     "port (/livez, /readyz, /metrics), e.g. vision: http://127.0.0.1:9101")
    lag_groups: list[str] | None = Field(None, description="consumer groups whose lag the health page shows "
                                         "(None: every group the broker lists, at most 50)")
    health_interval: Duration = Field(5.0, gt=0, description="how often services and lag are probed")
    probe_timeout: Duration = Field(2.0, gt=0, description="a service that does not answer within this is down")
    alerts_poll: Duration = Field(1.0, gt=0, description="how often Redis is read for firing alerts")
    history: Duration = Field(3600.0, ge=0, description="recent alerts: the alerts topic is read back this far at "
                              "start (lifecycle events only; frames and detections are never replayed)")
    recent_max: int = Field(100, ge=1, description="recent (resolved) alerts kept")
    score_window: Duration = Field(60.0, gt=0, description="each microphone's scores kept for the wall")
    max_updates_per_s: float = Field(10.0, gt=0, description="per camera and per browser: frames pushed at most this "
                                     "often (each browser gets the latest; a slow one never builds a backlog)")
    box_hold: Duration = Field(1.5, ge=0, description="a camera's boxes stay on its frames this long after its "
                               "latest detection")
    max_frame_age: Duration = Field(5.0, gt=0, description="frames older than this are skipped: a console that fell "
                                    "behind jumps to the end of the partition")
    snapshot_link_ttl: Duration = Field(3600.0, gt=0, description="lifetime of the signed evidence links in pages")

    @field_validator("services")
    @classmethod
    def _urls(cls, services: dict[str, str]) -> dict[str, str]:
        for name, url in services.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"console.services.{name}: {url!r} is not an http(s) URL "
                                 "(e.g. http://127.0.0.1:9101, a service's metrics port)")
        return {name: url.rstrip("/") for name, url in services.items()}


class ConsoleServiceSettings(AlertingServiceSettings):
    console: ConsoleSettings = ConsoleSettings()
