"""The operator console in a real browser (issue 15 item 6): Debian's chromium, headless, driven
by Selenium through Debian's chromedriver, against the real stack.

``live`` is one stack for the whole folder, as deployed: the session's Kafka and Redis
(tests/conftest.py), the vision processor serving the shipped model, the alerting service and
``skysentry console`` on 127.0.0.1, each its own process from one config file; the webhook,
Slack and Twilio stand-in is the project's loopback :class:`RecordingReceiver`. The producers
run in a background event loop of this process (:class:`Background`), so a test (Selenium
blocks) can start and stop a camera while the browser watches: the synthetic camera streams
all along; a *pass* is the real drone clip of ``samples/`` streamed as camera ``field-drone``
(the shipped vision model reports the synthetic scene's procedural drones as birds, and
alerts on the clip, as tests/e2e/test_pipeline.py relies on).

Every test leaves a screenshot in ``.skysentry/artifacts/browser/`` (git-ignored), named after
the test, ``-failed`` when it failed; the times measured go to ``times.json`` there and to the
run's closing summary. With ``SKYSENTRY_WRITE_SCREENSHOT=1`` (``make screenshot``) the run also
writes the README's ``docs/console.png``; ``make test`` never changes a tracked file.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerting.testing import RecordingReceiver
from deploy.local.pipeline import ROOT, WEBHOOK_SECRET_ENV, EVIDENCE_SECRET_ENV, TWILIO_TOKEN_ENV, Observed, \
    Watcher, free_port, group_ids, pipeline_config, sample_clips, start_console, \
    with_metrics
from producers.camera import CameraProducer
from skysentry.config import CameraSettings, Settings, TopicSettings
from skysentry.service import ServiceProcess
from skysentry.topics import ensure_topics

ARTIFACTS = ROOT / ".skysentry" / "artifacts" / "browser"
README_SCREENSHOT = ROOT / "docs" / "console.png"
README_SOURCE = "wall.png"  # which of the run's screenshots the README shows
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WINDOW = (1280, 800)


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    """The artefact folder, emptied of the last run's screenshots. At the end, with
    SKYSENTRY_WRITE_SCREENSHOT=1, its ``README_SOURCE`` becomes the README's picture."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    yield ARTIFACTS
    if os.environ.get("SKYSENTRY_WRITE_SCREENSHOT") == "1":
        source = ARTIFACTS / README_SOURCE
        assert source.exists(), f"no {README_SOURCE} in this run: docs/console.png not written"
        print(f"\nwrote {write_readme_screenshot(source)} from {source}")


MEASURED: dict[str, Any] = {}  # what the tests timed: times.json, and the run's closing summary


@pytest.fixture(scope="session")
def measured(artifacts: Path) -> Iterator[dict[str, Any]]:
    yield MEASURED
    if MEASURED:
        (artifacts / "times.json").write_text(json.dumps(MEASURED, indent=2, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED:
        terminalreporter.write_sep("-", f"console in the browser, measured (also in {ARTIFACTS}/times.json)")
        for key, value in sorted(MEASURED.items()):
            terminalreporter.write_line(f"  {key}: {value}")


@pytest.fixture(scope="session")
def browser(artifacts: Path):
    """One headless chromium for the session."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (Debian packages chromium and chromium-driver: "
                    "`make system-deps` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                "--force-device-scale-factor=1", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-GB",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # chromium's sandbox refuses to run as root
    driver = webdriver.Chrome(options=options,
                              service=Service(CHROMEDRIVER, log_output=str(artifacts / "chromedriver.log")))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"report_{report.when}", report)  # for the screenshot fixture below
    return report


@pytest.fixture(autouse=True)
def screenshot_after(request: pytest.FixtureRequest, browser, artifacts: Path) -> Iterator[None]:
    """Every test's last screen, also (``-failed``) when it failed."""
    yield
    report = getattr(request.node, "report_call", None)
    failed = report is None or report.failed
    browser.save_screenshot(str(artifacts / f"{request.node.name}{'-failed' if failed else ''}.png"))


def write_readme_screenshot(png: Path, target: Path = README_SCREENSHOT, width: int = 1000) -> Path:
    """``png``, scaled down to ``width`` px if wider, as a compressed PNG at ``target`` (the
    README's picture; true colour: a 256-colour palette bands the sky and loses the red box)."""
    import cv2

    image = cv2.imread(str(png), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(target), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {target}")
    return target


# -- the stack -------------------------------------------------------------------------------


class Background:
    """An event loop in a thread: the producers and the topic watcher run here while a test
    blocks on Selenium."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="browser-tests-loop", daemon=True)
        self.thread.start()

    def submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro, timeout: float = 60.0):
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Stream:
    """One camera producer running in the background loop until :meth:`stop`."""

    producer: CameraProducer
    stop_event: asyncio.Event
    task: asyncio.Task
    started_at: float  # time.time()
    background: Background

    @property
    def running(self) -> bool:
        return not self.task.done()

    def stop(self) -> dict[str, int]:
        """Stop the producer (it flushes what it holds); what it published and dropped."""
        async def join() -> None:
            self.stop_event.set()
            await self.task

        self.background.call(join(), timeout=30)
        stats = self.producer.publisher.stats
        return {"published": stats.published, "dropped": stats.dropped}


@dataclass
class Live:
    """The running stack of the browser tests."""

    url: str  # the console on loopback
    name: str  # the run's name: its topics and consumer groups start with it
    config: Path
    env: dict[str, str]  # the services' environment (secrets included)
    workdir: Path
    settings: Settings
    receiver: RecordingReceiver
    background: Background
    watcher: Watcher
    services: dict[str, ServiceProcess]
    drone_camera: CameraSettings
    streams: list[Stream] = field(default_factory=list)

    def __repr__(self) -> str:  # a failing test prints this; the whole state would bury the message
        return f"Live({self.url})"

    @property
    def seen(self) -> Observed:
        return self.watcher.seen

    def stream(self, camera: CameraSettings) -> Stream:
        """Start streaming ``camera`` onto the frames topic."""
        async def start() -> Stream:
            producer = CameraProducer(camera, self.settings.kafka, self.settings.topics)
            stop = asyncio.Event()
            return Stream(producer, stop, asyncio.create_task(producer.run(stop)), time.time(), self.background)

        s = self.background.call(start())
        self.streams.append(s)
        return s

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float, poll: float = 0.1) -> Any:
        """``predicate()``'s first truthy value; fails naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if got := predicate():
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout:.0f}s")
            for name, svc in self.services.items():
                if svc.proc.poll() is not None:
                    pytest.fail(f"{name} exited with status {svc.proc.returncode} while waiting for {what}:\n"
                                f"{svc.tail(30)}")
            time.sleep(poll)


@pytest.fixture(scope="session")
def live(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    uid = uuid.uuid4().hex[:8]
    name = f"browser-{uid}"
    topics = TopicSettings(frames=f"{name}.frames", audio=f"{name}.audio", detections=f"{name}.detections",
                           alerts=f"{name}.alerts", models=f"{name}.models", partitions=3)
    settings = Settings(kafka={"bootstrap_servers": stack.bootstrap_servers}, redis={"url": stack.redis_url},
                        topics=topics)
    workdir = tmp_path_factory.mktemp("browser")
    background = Background()
    background.call(ensure_topics(settings.kafka, topics, groups=tuple(group_ids(name).values())))
    receiver = RecordingReceiver().start()
    port = free_port()
    doc = pipeline_config(stack.bootstrap_servers, stack.redis_url, receiver, topics=topics, name=name)
    # short passes: an alert resolves 3 s after its drone is gone; notifications leave at once
    doc["alerting"].update({"resolve_after": "3s", "mute_recheck": "1s"})
    doc["alerting"]["route"]["group_wait"] = "0s"
    doc["evidence"] = {"url": str(workdir / "evidence"), "public_url": f"http://127.0.0.1:{port}",
                       "capture_timeout": "5s"}
    metrics_ports = {key: free_port() for key in ("vision", "alerting")}  # what the health page probes
    doc["console"] = {"services": {key: f"http://127.0.0.1:{p}" for key, p in metrics_ports.items()},
                      "lag_groups": [group_ids(name)[key] for key in metrics_ports], "health_interval": "1s"}
    config = workdir / "skysentry.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSENTRY_")}
    env.update({WEBHOOK_SECRET_ENV: "browser-webhook-secret", TWILIO_TOKEN_ENV: "browser-twilio-token",
                EVIDENCE_SECRET_ENV: uuid.uuid4().hex, "PYTHONUNBUFFERED": "1"})
    services = {key: ServiceProcess(key, args, config, env=with_metrics(env, metrics_ports[key]),
                                    log_path=workdir / f"{key}.log", cwd=ROOT)
                for key, args in (("vision", ["stream_processors", "vision"]), ("alerting", ["alerting", "run"]))}
    watcher = Watcher(settings)
    background.call(watcher.__aenter__())
    drone = next(c for c in sample_clips() if c.truth == "drone")
    run = Live(url=f"http://127.0.0.1:{port}", name=name, config=config, env=env, workdir=workdir, settings=settings,
               receiver=receiver, background=background, watcher=watcher, services=services,
               drone_camera=drone.camera())
    try:
        for svc in services.values():
            svc.start()
        for svc in services.values():
            background.call(svc.wait_assigned(timeout=180), timeout=200)
        services["console"] = start_console(config, port=port, env=env, log_path=workdir / "console.log")
        run.stream(CameraSettings(camera_id="cam-1", site="site-1"))  # the synthetic sky, all along
        yield run
    finally:
        for s in run.streams:
            if s.running:
                s.stop()
        exits = {key: svc.stop() for key, svc in services.items()}
        background.call(watcher.__aexit__(None, None, None))
        background.close()
        receiver.stop()
        for log in workdir.glob("*.log"):  # the services' logs beside the screenshots
            shutil.copy(log, ARTIFACTS / log.name)
        errors = {key: svc.errors() for key, svc in services.items() if svc.errors()}
        assert exits == {key: 0 for key in services} and not errors, (exits, errors)
