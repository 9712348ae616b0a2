"""Settings for every SkySentry service, one pydantic model per section.

Precedence, lowest to highest: the defaults below < a YAML file < environment variables
< keyword arguments. The YAML file is named by ``SKYSENTRY_CONFIG`` (or passed as
``Settings.load(path)``). Environment variables use the prefix ``SKYSENTRY_`` and ``__``
between nesting levels, e.g. ``SKYSENTRY_KAFKA__CLIENT_ID=cam-7``. Two conventional names
are honoured as well, because operators already know them: ``KAFKA_BOOTSTRAP_SERVERS`` and
``REDIS_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "skysentry"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # Large enough for a 4K JPEG frame; topics are created with the same limit.
    max_message_bytes: int = 16 * 1024 * 1024
    request_timeout_ms: int = 30_000


class RedisSettings(BaseModel):
    url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")


class TopicSettings(BaseModel):
    """Topic names (overridable so tests and tenants can share a cluster) and creation."""

    frames: str = "sensor.frames"
    audio: str = "sensor.audio"
    detections: str = "detections"
    alerts: str = "alerts"
    models: str = "models"
    partitions: int = 6
    replication_factor: int = 1
    # Retention of perishable sensor data; detections and alerts keep the broker default.
    sensor_retention_ms: int = 6 * 3600 * 1000


class MetricsSettings(BaseModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port; the chosen one is logged


class LogSettings(BaseModel):
    level: str = "INFO"
    json_format: bool = Field(default=True, alias="json")

    model_config = {"populate_by_name": True}


class CameraSettings(BaseModel):
    source: str = "synthetic"  # device index, file path, rtsp://, http(s)://, or "synthetic"
    camera_id: str = "cam-1"
    site: str = "site-1"
    fps: float = 5.0
    max_width: int = 1280
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    loop: bool = False
    buffer_frames: int = 50  # frames are perishable: the oldest is dropped past this
    # Live sources (a device, rtsp://, http(s)://): how they are watched and reopened.
    reconnect: bool = Field(True, description="reopen a live source that is down (at start or mid-run) forever; "
                            "false: give up with exit code 2 (one-shot use)")
    reconnect_initial_s: float = Field(0.25, gt=0, description="first delay before reopening; also the steady "
                                       "retry delay while the stream is 'not found' (a server up, its stream not "
                                       "announced yet)")
    reconnect_max_s: float = Field(2.0, gt=0, description="cap of the doubling, jittered delay between reopen tries")
    stall_intervals: float = Field(2.0, gt=0, description="a live source that delivers no new frame for this many "
                                   "frame intervals (of fps, or of the source's own rate if slower) is 'stale'")
    max_lag_s: float = Field(1.0, gt=0, description="a frame whose stream timestamp lags the stream's usual delay "
                             "by more than this is old (a decoder flushing after a stall): dropped, never "
                             "published as new")
    read_timeout_s: float = Field(2.0, gt=0, description="a live source with no new frame for this long is reopened")
    open_timeout_s: float = Field(5.0, gt=0, description="time allowed to open a live source")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="how RTP comes from an rtsp:// camera: "
                                                  "interleaved in the RTSP TCP connection (firewall-friendly) or UDP")


class MicrophoneSettings(BaseModel):
    source: str = Field(default="synthetic", description="'default', a device index or name ('device:NAME'), a "
                        "WAV/FLAC path, or 'synthetic'")
    mic_id: str = Field(default="mic-1", description="Microphone id: the Kafka key and ce_source")
    site: str = Field(default="site-1", description="Site the microphone belongs to")
    window_s: float = Field(default=1.0, description="Window length in seconds")
    hop_s: float = Field(default=0.5, description="Seconds between window starts")
    sample_rate: int = Field(default=16_000, description="Sample rate of the published windows (Hz)")
    realtime: bool = Field(default=True, description="File replay: pace to the wall clock, or as fast as possible")
    loop: bool = Field(default=False, description="Replay a file (or the synthetic source) forever")
    buffer_windows: int = Field(default=600, description="Windows kept while the broker is away (600: 5 min at "
                                "0.5 s hop); past it the oldest is dropped")
    snr_db: float = Field(default=10.0, description="Synthetic source only: rotor-to-noise ratio in dB")
    # Live devices only: how a lost input is noticed and reopened (files and synthetic ignore these).
    stall_s: float = Field(default=1.0, gt=0, description="Live device: no audio block for this long on an open "
                           "stream means its callbacks stopped; the source turns stale and is reopened")
    start_timeout_s: float = Field(default=5.0, gt=0, description="Live device: time a (re)opened stream has to "
                                   "deliver its first block before it counts as stalled")
    reconnect: bool = Field(default=True, description="Live device: reopen a lost device until it works again "
                            "(forever); false: the first loss ends the producer with 'source unavailable' (exit 2)")
    reconnect_initial_s: float = Field(default=0.2, gt=0, description="Live device: first wait before reopening; "
                                       "doubles per failed try, with jitter")
    reconnect_max_s: float = Field(default=2.0, gt=0, description="Live device: longest wait between reopen tries")


class Settings(BaseSettings):
    """All settings of one process. Services read only their own sections."""

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicSettings = TopicSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    camera: CameraSettings = CameraSettings()
    mic: MicrophoneSettings = MicrophoneSettings()

    model_config = SettingsConfigDict(
        env_prefix="SKYSENTRY_", env_nested_delimiter="__", extra="ignore", nested_model_default_partial_update=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_path = os.environ.get("SKYSENTRY_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _WellKnownEnv(settings_cls)]
        if yaml_path:
            sources.append(_YamlFile(settings_cls, yaml_file=_existing(yaml_path)))
        return tuple(sources)

    @classmethod
    def load(cls, config: Path | str | None = None, **overrides: Any) -> "Settings":
        """Build settings, reading ``config`` (YAML) when given, else ``$SKYSENTRY_CONFIG``."""
        if config is None:
            return cls(**overrides)
        previous = os.environ.get("SKYSENTRY_CONFIG")
        os.environ["SKYSENTRY_CONFIG"] = str(config)
        try:
            return cls(**overrides)
        finally:
            if previous is None:
                os.environ.pop("SKYSENTRY_CONFIG", None)
            else:
                os.environ["SKYSENTRY_CONFIG"] = previous


class ConfigError(ValueError):
    """A config file that is not a YAML mapping; the message names the file and what is wrong."""


class _YamlFile(YamlConfigSettingsSource):
    """The YAML config, refused with a ConfigError unless it is UTF-8 YAML whose top level is a
    mapping (a list or a bare string crashed deep inside pydantic-settings with a TypeError)."""

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        import yaml

        try:
            doc = yaml.safe_load(Path(file_path).read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {file_path} is not UTF-8 text: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file_path} is not valid YAML: {' '.join(str(exc).split())}") from None
        if doc is None:
            return {}
        if not isinstance(doc, dict):
            raise ConfigError(f"config file {file_path}: the top level must be a mapping of sections "
                              f"(kafka:, topics:, ...), not a {type(doc).__name__}")
        _check_keys(doc, file_path)
        return doc


def _check_keys(node: Any, file_path: Path, where: str = "", inside: tuple[int, ...] = ()) -> None:
    """Every key of every mapping is a string (YAML also allows null, numbers and lists as keys;
    pydantic-settings crashed on a null one: AttributeError 'NoneType' has no attribute 'lower'),
    and nothing contains itself (a recursive YAML anchor, ``a: &x [*x]``)."""
    if not isinstance(node, (dict, list)):
        return
    if id(node) in inside:
        raise ConfigError(f"config file {file_path}: {where} contains itself (a recursive YAML anchor)")
    inside += (id(node),)
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(node, dict) and not isinstance(key, str):
            raise ConfigError(f"config file {file_path}: key {key!r:.40} {'in ' + where if where else 'at the top'}"
                              " is not a string (quote it)")
        _check_keys(value, file_path, f"{where}[{key}]" if isinstance(node, list) else
                    (f"{where}.{key}" if where else key), inside)


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} (from SKYSENTRY_CONFIG) does not exist; fix the path or unset it")
    return p


class _WellKnownEnv(PydanticBaseSettingsSource):
    """``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``, below the SKYSENTRY_ variables."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            out["kafka"] = {"bootstrap_servers": servers}
        if url := os.environ.get("REDIS_URL"):
            out["redis"] = {"url": url}
        return out
