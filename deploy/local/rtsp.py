"""A real RTSP camera on loopback, for the live-source tests and drills.

Two processes, each killable on its own like the parts of a real camera system:
- the server: npm's ``rtsp-streaming-server`` (deploy/local/rtsp/server.js; ``npm ci`` on first
  use). It relays RTP over UDP only, so a client asking for TCP gets 461, and with a user and
  password it answers 401 to anyone else;
- the publisher: ffmpeg re-encoding a clip in a loop (H.264, a keyframe a second) and
  announcing it to the server, as an encoder or a camera's firmware would.

    cam = RtspCamera(workdir, clip)
    cam.start()            # server, then publisher; returns once the stream is announced
    cam.url()              # rtsp://[user:pass@]127.0.0.1:PORT/cam
    cam.freeze() / cam.thaw()        # SIGSTOP / SIGCONT the publisher: a stalled stream
    cam.stop_publisher(); cam.stop_server()   # kill -9: a lost stream, a lost camera
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from producers.diagnose import describe

NODE_DIR = Path(__file__).with_name("rtsp")


def ensure_installed() -> None:
    """Install the server's npm package (pinned by package-lock.json) unless it is there; `make
    test` does this first (the contract-deps target)."""
    if (NODE_DIR / "node_modules" / "rtsp-streaming-server" / "package.json").exists():
        return
    subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                   check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RtspCamera:
    workdir: Path
    clip: Path
    user: str = ""
    password: str = ""
    path: str = "cam"
    fps: int = 10
    publish_port: int = field(default_factory=free_port)
    client_port: int = field(default_factory=free_port)
    rtp_base: int = field(default_factory=lambda: random.randrange(20000, 60000, 200))
    server: subprocess.Popen | None = None
    publisher: subprocess.Popen | None = None

    def url(self, *, credentials: bool = True) -> str:
        auth = f"{self.user}:{self.password}@" if credentials and self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.client_port}/{self.path}"

    def start(self, timeout_s: float = 20.0) -> None:
        self.start_server(timeout_s)
        self.start_publisher(timeout_s)

    def start_server(self, timeout_s: float = 20.0) -> None:
        ensure_installed()
        env = dict(os.environ, PUBLISH_PORT=str(self.publish_port), CLIENT_PORT=str(self.client_port),
                   RTP_PORT_START=str(self.rtp_base), RTP_PORT_COUNT="200", RTSP_USER=self.user,
                   RTSP_PASS=self.password)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = subprocess.Popen(["node", str(NODE_DIR / "server.js")], env=env,
                                       stdout=(self.workdir / "server.log").open("ab"), stderr=subprocess.STDOUT)
        self._wait(lambda: describe(self.url(), timeout_s=1.0) != 0, timeout_s, "the RTSP server to listen",
                   self.server)

    def start_publisher(self, timeout_s: float = 20.0) -> None:
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
               "-i", str(self.clip), "-an", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
               "-g", str(self.fps), "-r", str(self.fps), "-f", "rtsp",
               f"rtsp://127.0.0.1:{self.publish_port}/{self.path}"]
        self.publisher = subprocess.Popen(cmd, stdout=(self.workdir / "publisher.log").open("ab"),
                                          stderr=subprocess.STDOUT)
        self._wait(self.announced, timeout_s, "the clip to be announced", self.publisher)

    def announced(self) -> bool:
        return describe(self.url(), timeout_s=1.0) == 200

    def freeze(self) -> None:
        self.publisher.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.publisher.send_signal(signal.SIGCONT)

    def stop_publisher(self) -> None:
        self.publisher = _kill(self.publisher)

    def stop_server(self) -> None:
        self.server = _kill(self.server)

    def stop(self) -> None:
        if self.publisher:
            self.thaw()
        self.stop_publisher()
        self.stop_server()

    @staticmethod
    def _wait(ready, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"gave up waiting for {what}: the process exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
            time.sleep(0.1)


def _kill(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.kill()
        proc.wait(10)
    return None
