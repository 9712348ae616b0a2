"""docker-compose.yml and the images' Dockerfiles against the code they deploy.

No Docker needed: what is checked here is what breaks when the code moves and the deployment
files do not follow — a sub-command renamed, a settings field renamed (pydantic-settings
silently ignores an unknown SKYSENTRY_* variable), a package added to pyproject.toml but not
copied into the images, a metrics port Prometheus does not scrape, a secret pasted into the
file. The Compose loader itself and BuildKit's Dockerfile lint run in deploy/check/run.sh.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER_DIR = ROOT / "deploy" / "docker"
ALERTING_ENV_EXAMPLE = DOCKER_DIR / "alerting.env.example"

# SKYSENTRY_* variables that are read directly by a process rather than being settings
# fields; each is checked to be read somewhere in the code (see test_process_level_names_are_read).
PROCESS_LEVEL_NAMES = {
    "SKYSENTRY_CONFIG",  # skysentry/config.py: the YAML settings file
    "SKYSENTRY_DATA",  # trainer: development data root
    "SKYSENTRY_CACHE",  # trainer: feature cache
    "SKYSENTRY_REGISTRY",  # trainer: where models are published
}
WELL_KNOWN_NAMES = {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}  # honoured by skysentry.config


# ------------------------------------------------------------------------------------------
# reading the files
# ------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Compose's interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR:+alt}``, ``$$``), by default with an empty environment, so
    that what is checked is what the file itself falls back to."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(5)
        colon, op, arg = m.group(2), m.group(3), m.group(4)
        present = name in env and (env[name] != "" or not colon)
        if op == "-":
            return env[name] if present else arg
        if op == "?":
            if not present:
                raise ValueError(f"required variable {name}: {arg}")
            return env[name]
        if op == "+":
            return arg if present else ""
        return env.get(name, "")

    return _VAR.sub(one, value)


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def skysentry_services(compose: dict) -> dict[str, dict]:
    """Services that run one of our images (built from deploy/docker/)."""
    out = {}
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if isinstance(build, dict) and str(build.get("dockerfile", "")).startswith("deploy/docker/"):
            out[name] = svc
    return out


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: "" if v is None else str(v) for k, v in interpolate(env).items()}


def command(svc: dict) -> list[str]:
    cmd = interpolate(svc.get("command") or [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuations joined, comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def copy_sources(path: Path) -> list[str]:
    """Sources of the Dockerfile's COPY/ADD from the build context (not ``--from`` a stage)."""
    sources = []
    for word, args in dockerfile_instructions(path):
        if word not in ("COPY", "ADD"):
            continue
        parts = shlex.split(args)
        flags = [p for p in parts if p.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        rest = [p for p in parts if not p.startswith("--")]
        if rest and rest[0].startswith("["):
            rest = json.loads(args[args.index("["):])
        sources += rest[:-1]
    return sources


def dockerfile_env(path: Path, stage: int = -1) -> dict[str, str]:
    """ENV of one stage (the final one by default)."""
    stages: list[dict[str, str]] = []
    for word, args in dockerfile_instructions(path):
        if word == "FROM":
            stages.append({})
        elif word == "ENV" and stages:
            for part in shlex.split(args):
                if "=" in part:
                    key, value = part.split("=", 1)
                    stages[-1][key] = value
    return stages[stage]


def dockerfiles() -> list[Path]:
    return sorted(DOCKER_DIR.glob("Dockerfile*"))


# ------------------------------------------------------------------------------------------
# settings names
# ------------------------------------------------------------------------------------------


def settings_class_for(cmd: list[str]) -> type:
    """The settings class the service behind ``skysentry <cmd>`` loads."""
    from skysentry.config import Settings

    if cmd[:1] == ["process"]:
        from stream_processors.settings import ProcessorSettings

        return ProcessorSettings
    if cmd[:1] == ["alert"]:
        from alerting.config import AlertingServiceSettings

        return AlertingServiceSettings
    return Settings


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation allows (Optional, Union, Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _field_of(model: type[BaseModel], segment: str) -> Any | None:
    for name, field in model.model_fields.items():
        names = {name, field.alias, field.validation_alias if isinstance(field.validation_alias, str) else None}
        if segment in {n.lower() for n in names if n}:
            return field.annotation
    return None


def resolve_setting(settings_cls: type[BaseModel], env_name: str) -> str | None:
    """None when ``SKYSENTRY_A__B__C`` addresses a field of ``settings_cls`` the way
    pydantic-settings reads it (case-insensitive, ``__`` between levels, any key of a dict,
    any member of a union); else why not."""
    segments = env_name.removeprefix("SKYSENTRY_").lower().split("__")
    types_here: list[Any] = [settings_cls]
    path: list[str] = []
    for segment in segments:
        path.append(segment)
        following: list[Any] = []
        for t in types_here:
            if isinstance(t, type) and issubclass(t, BaseModel):
                annotation = _field_of(t, segment)
                if annotation is not None:
                    following += _unwrap(annotation)
            elif typing.get_origin(t) is dict:
                following += _unwrap(typing.get_args(t)[1])
        if not following:
            here = [getattr(t, "__name__", str(t)) for t in types_here]
            return f"{'.'.join(path)!r} is not a field of {', '.join(here)}"
        types_here = following
    return None


def check_env_names(names: list[str], settings_cls: type) -> list[str]:
    problems = []
    for name in names:
        if name in WELL_KNOWN_NAMES or name in PROCESS_LEVEL_NAMES or not name.startswith("SKYSENTRY_"):
            continue
        why = resolve_setting(settings_cls, name)
        if why:
            problems.append(f"{name}: {why} (pydantic-settings would ignore it silently)")
    return problems


# ------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------

COMPOSE_DATA = load_compose()
SERVICES = skysentry_services(COMPOSE_DATA)
LONG_RUNNING = {n: s for n, s in SERVICES.items() if str(s.get("restart", "")) != "no"}


def test_compose_has_the_pipeline():
    expected = {"kafka", "redis", "topics", "camera", "mic", "vision", "audio", "alerting", "vision-gpu", "prometheus"}
    assert expected <= set(COMPOSE_DATA["services"]), expected - set(COMPOSE_DATA["services"])
    assert expected - {"kafka", "redis", "prometheus"} <= set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_command_is_a_real_subcommand(service):
    """``<command> --help`` through the real CLI: a renamed or unmounted sub-command, or an
    option that no longer exists, fails here rather than in a crash-looping container."""
    from skysentry.cli import app

    cmd = command(SERVICES[service])
    assert cmd, f"{service}: no command (the image's CMD is --help)"
    result = CliRunner().invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, (f"`skysentry {' '.join(cmd)} --help` exited {result.exit_code} for service "
                                   f"{service}:\n{result.output}")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_build_dockerfile_exists(service):
    build = SERVICES[service]["build"]
    context = ROOT / build.get("context", ".")
    assert context.resolve() == ROOT, f"{service}: the build context must be the repository root"
    assert (context / build["dockerfile"]).is_file(), f"{service}: {build['dockerfile']} does not exist"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist(dockerfile):
    sources = copy_sources(dockerfile)
    assert sources, f"{dockerfile.name}: no COPY found (parser out of date?)"
    missing = [s for s in sources if not any(ROOT.glob(s.rstrip("/")))]
    assert not missing, f"{dockerfile.name} copies {missing}, which are not in the repository"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_images_copy_every_package(dockerfile):
    """setuptools builds the wheel from what is in the build stage; a package pyproject.toml
    includes but the Dockerfile does not copy would be missing from the image, silently."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted({p.split("*")[0].split(".")[0] for p in patterns})
    copied = {s.strip("/").split("/")[0] for s in copy_sources(dockerfile)}
    missing = [p for p in packages if (ROOT / p).is_dir() and p not in copied]
    assert not missing, f"{dockerfile.name} does not copy {missing} (pyproject.toml includes them)"
    assert "models" in copied, f"{dockerfile.name}: the shipped models must be in the image"


def test_serving_images_never_install_torch():
    """The serving images install pyproject's base dependencies (+ gpu); the trainer adds the
    `train` extra. Computed with the images' own helper, from the real pyproject.toml."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_requirements", DOCKER_DIR / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pyproject = ROOT / "pyproject.toml"
    name = module._name

    serving = {name(r) for r in module.requirements(pyproject, [], [])}
    gpu = {name(r) for r in module.requirements(pyproject, ["gpu"], ["onnxruntime"])}
    trainer = {name(r) for r in module.requirements(pyproject, ["train"], [])}
    assert "torch" not in serving and "torch" not in gpu, "torch is a base dependency: serving would install it"
    assert "onnxruntime" in serving
    assert "onnxruntime" not in gpu and "onnxruntime-gpu" in gpu
    assert "torch" in trainer

    calls = {p.name: " ".join(a for w, a in dockerfile_instructions(p) if w == "RUN" and "requirements.py" in a)
             for p in dockerfiles()}
    assert "--extra train" not in calls["Dockerfile"] and "--extra train" not in calls["Dockerfile.gpu"]
    assert "--extra gpu" in calls["Dockerfile.gpu"] and "--without onnxruntime" in calls["Dockerfile.gpu"]
    assert "--extra train" in calls["Dockerfile.trainer"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_settings_variables_are_settings_fields(service):
    """Every SKYSENTRY_A__B the service is given (by the compose file and by its image's ENV)
    names a field of the settings class that service loads."""
    svc = SERVICES[service]
    settings_cls = settings_class_for(command(svc))
    image_env = dockerfile_env(ROOT / svc["build"]["dockerfile"])
    problems = check_env_names([*image_env, *environment(svc)], settings_cls)
    assert not problems, f"{service}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_settings_load_from_its_environment(service, monkeypatch):
    """The service's environment (image ENV, then compose) builds its settings, and the
    values land where intended."""
    import os

    for key in list(os.environ):
        if key.startswith("SKYSENTRY_") or key in WELL_KNOWN_NAMES:
            monkeypatch.delenv(key)
    svc = SERVICES[service]
    image_env = {k: v for k, v in dockerfile_env(ROOT / svc["build"]["dockerfile"]).items()
                 if k.startswith("SKYSENTRY_")}  # not PATH=/opt/venv/bin:$PATH into this process
    env = {**image_env, **environment(svc)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_class_for(command(svc))()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.redis.url.get_secret_value().startswith("redis://redis:")
    assert settings.metrics.host == "0.0.0.0"
    assert settings.metrics.port == int(env["SKYSENTRY_METRICS__PORT"])


def test_process_level_names_are_read():
    """The allow-list above stays honest: each name is still read by the code."""
    code = "\n".join(p.read_text() for d in ("skysentry", "producers", "stream_processors", "detectors",
                                             "alerting", "trainer", "deploy")
                     for p in (ROOT / d).rglob("*.py") if "tests" not in p.parts)
    unread = [n for n in PROCESS_LEVEL_NAMES if f'"{n}"' not in code]
    assert not unread, f"no code reads {unread}: drop them from the images / PROCESS_LEVEL_NAMES"


def _example_lines() -> list[tuple[str, str]]:
    lines = []
    for raw in ALERTING_ENV_EXAMPLE.read_text().splitlines():
        line = raw.lstrip("#").strip()
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            key, value = line.split("=", 1)
            lines.append((key, value.strip("'")))
    return lines


def test_alerting_env_example_names_are_settings_fields():
    from alerting.config import AlertingServiceSettings

    names = [k for k, _ in _example_lines()]
    assert names, "alerting.env.example lists no variables"
    problems = check_env_names(names, AlertingServiceSettings)
    assert not problems, "\n".join(problems)


def test_alerting_env_example_enabled_whole_is_valid(monkeypatch):
    """Every channel of the example enabled, with stand-in secrets: alerting's settings load
    (a channel type with a new required field, or a route to a renamed channel, fails here)."""
    import os

    from alerting.config import AlertingServiceSettings

    for key in list(os.environ):
        if key.startswith("SKYSENTRY_") or key in WELL_KNOWN_NAMES:
            monkeypatch.delenv(key)
    stand_ins = {"SKYSENTRY_WEBHOOK_URL": "https://ops.example.invalid/hook", "SKYSENTRY_WEBHOOK_SECRET": "stand-in",
                 "SLACK_WEBHOOK_URL": "https://slack.example.invalid/hook", "TWILIO_ACCOUNT_SID": "AC-stand-in",
                 "TWILIO_AUTH_TOKEN": "stand-in", "TWILIO_FROM": "+15550100", "TWILIO_TO": '["+15550111"]'}
    for key, value in _example_lines():
        monkeypatch.setenv(key, interpolate(value, stand_ins))
    settings = AlertingServiceSettings()
    assert set(settings.alerting.route.all_receivers()) == set(settings.alerting.channels)
    assert {c.type for c in settings.alerting.channels.values()} == {"webhook", "slack", "twilio"}


# Keys whose values are credentials, and shapes of credentials in any value.
_SECRET_KEY = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE|AUTH|CREDENTIAL|WEBHOOK|_SID$|SASL", re.I)
_SECRET_SHAPES = [
    re.compile(r"hooks\.slack\.com/services/[A-Za-z0-9/]+"),
    re.compile(r"\bAC[0-9a-f]{32}\b"),  # Twilio account SID
    re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack tokens
    re.compile(r"://[^/\s:@${}]+:[^/\s@${}]+@"),  # user:password@ in a URL
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def test_no_literal_secrets():
    """Credentials come from the environment (${VAR} interpolation), never from the file."""
    problems = []
    for name, svc in COMPOSE_DATA["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        for key, value in env.items():
            text = "" if value is None else str(value)
            if _SECRET_KEY.search(key) and text and not re.fullmatch(r"\$\{[^}]+\}", text):
                problems.append(f"{name}.environment.{key} is a literal; use ${{VAR:-}} from the environment")
    for path in (COMPOSE, ALERTING_ENV_EXAMPLE, DOCKER_DIR / "prometheus.yml", *dockerfiles()):
        for shape in _SECRET_SHAPES:
            for m in shape.finditer(path.read_text()):
                problems.append(f"{path.relative_to(ROOT)}: {m.group(0)[:24]}… looks like a credential")
    for key, value in _example_lines():
        if _SECRET_KEY.search(key.rsplit("__", 1)[-1]) or key.endswith(("__URL", "__TO", "__FROM")):
            assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", value), f"alerting.env.example {key}: {value}"
    assert not problems, "\n".join(problems)


def test_every_service_is_scraped_on_its_metrics_port():
    ports = {}
    for name, svc in LONG_RUNNING.items():
        env = environment(svc)
        assert "SKYSENTRY_METRICS__PORT" in env, f"{name}: give it a fixed SKYSENTRY_METRICS__PORT"
        ports[name] = int(env["SKYSENTRY_METRICS__PORT"])
    assert len(set(ports.values())) == len(ports), f"metrics ports collide: {ports}"

    prometheus = yaml.safe_load((DOCKER_DIR / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]}
    wanted = {f"{name}:{port}" for name, port in ports.items()}
    assert wanted <= targets, f"not scraped: {sorted(wanted - targets)}"
    ours = {t for t in targets if t.split(":")[0] in SERVICES}
    assert ours <= wanted, f"scraped but no such service/port: {sorted(ours - wanted)}"

    mount = [v for v in COMPOSE_DATA["services"]["prometheus"]["volumes"] if "prometheus.yml" in v]
    assert mount and mount[0].split(":")[0] == "./deploy/docker/prometheus.yml"


def test_start_order():
    """Services start after a healthy broker and after `topics create` has succeeded;
    alerting also after a healthy Redis; the one-shot is not restarted."""
    services = COMPOSE_DATA["services"]
    for infra in ("kafka", "redis"):
        assert "test" in services[infra]["healthcheck"], f"{infra} needs a healthcheck for service_healthy"
    assert str(SERVICES["topics"]["restart"]) == "no"
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name, svc in LONG_RUNNING.items():
        deps = svc["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy", name
        assert deps["topics"]["condition"] == "service_completed_successfully", name
    assert SERVICES["alerting"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_kafka_accepts_what_the_producers_send():
    from skysentry.config import KafkaSettings

    env = environment(COMPOSE_DATA["services"]["kafka"])
    limit = KafkaSettings().max_message_bytes
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= limit
    assert int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= limit
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    for svc in SERVICES.values():
        assert environment(svc)["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_gpu_service():
    svc = SERVICES["vision-gpu"]
    assert svc["profiles"] == ["gpu"]
    assert svc["build"]["dockerfile"] == "deploy/docker/Dockerfile.gpu"
    assert command(svc) == ["process", "vision"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert svc["image"] != SERVICES["vision"]["image"], "the GPU image must not overwrite the CPU image's tag"


def test_dockerignore_keeps_state_and_secrets_out():
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for pattern in (".git", ".venv", ".skysentry", "runs", "**/*.env", "tests"):
        assert pattern in lines, f".dockerignore should exclude {pattern}"


def test_the_wheel_carries_the_consoles_pages():
    """The console serves console/static/ from the installed package; a file setuptools leaves
    out of the wheel would be a 404 in every image (the package-data globs decide)."""
    from fnmatch import fnmatch

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"].get("console", [])
    static = [p.relative_to(ROOT / "console").as_posix() for p in (ROOT / "console" / "static").rglob("*") if p.is_file()]
    assert static, "console/static/ is empty"
    missing = [f for f in static if not any(fnmatch(f, g) for g in globs)]
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools.package-data] console): {missing}"
