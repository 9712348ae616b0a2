"""A real PulseAudio server in a temp dir, for tests and demos of live audio input.

``start()`` runs a user-mode ``pulseaudio`` (Debian's, package ``pulseaudio``) in the
foreground of its own session, like :mod:`deploy.local.stack` runs Redis, with a generated
script instead of the user's ``default.pa``::

    <dir>/
        skysentry.pa   the script: a null sink ``skysentry`` (audio played into it goes
                       nowhere), its monitor as the default source, and the native protocol on
                       ``<dir>/native`` (anonymous: only this user can reach the socket anyway)
        pulse.log      the server's log
        home/          HOME, XDG_RUNTIME_DIR and state of the server (never the user's own)

Clients find it through ``PULSE_SERVER=unix:<dir>/native`` (``server.env``); nothing is
written to the user's home. PortAudio in Debian talks ALSA, and the ALSA ``pulse`` plugin
(``libasound2-plugins``) with Debian's ``/etc/alsa/conf.d/99-pulse.conf`` (package
``pulseaudio``) routes ALSA's ``default`` device to the server whenever one answers at
``PULSE_SERVER``: ``python -m sounddevice`` then lists ``pulse`` and ``default``, and the
default input is the null sink's monitor, i.e. whatever ``play_loop`` plays. No ALSA config of
our own is needed. While the server is down those two devices are not listed at all.

``kill()`` is a crash (SIGKILL); ``start()`` again with the same dir brings the same socket
back. ``play_loop()`` plays a WAV into the null sink with ``paplay`` over and over; the loop
outlives a server restart (paplay fails fast while the server is away and is retried).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SINK = "skysentry"
_SUN_PATH_MAX = 107  # bytes of a unix socket path (sockaddr_un.sun_path, less the NUL)


class PulseError(RuntimeError):
    """The server could not be started; the message says why and where its log is."""


@dataclass
class PulseServer:
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    players: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.dir / "native"

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """What a client process (PortAudio/ALSA, paplay, pactl) needs to use this server."""
        return {"PULSE_SERVER": self.address}

    @property
    def log(self) -> Path:
        return self.dir / "pulse.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start(dir: Path | str | None = None, *, timeout_s: float = 10.0) -> PulseServer:
    """Start a server in ``dir`` (a new temp dir when None) and wait until it answers."""
    pulseaudio = shutil.which("pulseaudio")
    if pulseaudio is None:
        raise PulseError("pulseaudio is not on PATH; install it: sudo apt-get install pulseaudio pulseaudio-utils "
                         "libasound2-plugins")
    base = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="skysentry-pulse-"))
    server = PulseServer(base.resolve())
    if len(str(server.socket).encode()) > _SUN_PATH_MAX:
        raise PulseError(f"{server.socket} is too long for a unix socket; use a shorter dir")
    home = server.dir / "home"
    (home / "run").mkdir(parents=True, exist_ok=True)
    os.chmod(home / "run", 0o700)
    with contextlib.suppress(FileNotFoundError):
        server.socket.unlink()  # left by a killed server
    script = server.dir / "skysentry.pa"
    # The protocol last: once the socket accepts, the sink and the defaults are there.
    script.write_text(
        f"load-module module-null-sink sink_name={SINK} "
        "sink_properties=device.description=SkySentry-test-sink\n"
        f"set-default-sink {SINK}\n"
        f"set-default-source {SINK}.monitor\n"
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={server.socket}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "XDG_"))}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home / "run"), PULSE_RUNTIME_PATH=str(home / "run"),
               PULSE_STATE_PATH=str(home / "state"), PULSE_CONFIG_PATH=str(home / "config"))
    # -n: not the system's default.pa; no pid file (a killed server's would block the next);
    # never exit when idle; no realtime/nice requests; not the system-wide mode.
    cmd = [pulseaudio, "--daemonize=no", "--system=false", "--use-pid-file=no", "--exit-idle-time=-1",
           "--realtime=no", "--high-priority=no", "--log-target=stderr",
           "-n", "-F", str(script)]
    with server.log.open("ab") as out:
        out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting pulseaudio on {server.socket}\n".encode())
        out.flush()
        server.proc = subprocess.Popen(cmd, cwd=server.dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise PulseError(f"pulseaudio exited with {server.proc.returncode} at start; see {server.log}")
        if _answers(server.socket):
            return server
        time.sleep(0.05)
    stop(server)
    raise PulseError(f"pulseaudio did not answer on {server.socket} within {timeout_s:g} s; see {server.log}")


def restart(server: PulseServer, *, timeout_s: float = 10.0) -> PulseServer:
    """Start the server of ``server.dir`` again (same socket); players keep playing."""
    new = start(server.dir, timeout_s=timeout_s)
    server.proc = new.proc
    return server


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(path))
            return True
    except OSError:
        return False


def kill(server: PulseServer) -> None:
    """SIGKILL the server (a crash: clients see their streams die); players keep looping."""
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(10)


def stop(server: PulseServer, grace_s: float = 5.0) -> None:
    """Stop the players, then the server (SIGTERM, SIGKILL after ``grace_s``)."""
    for player in server.players:
        _stop_group(player)
    server.players.clear()
    if server.proc is not None and server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)


def play_loop(server: PulseServer, wav: Path | str) -> subprocess.Popen[bytes]:
    """Play ``wav`` into the null sink with ``paplay``, again and again, until ``stop``."""
    paplay = shutil.which("paplay")
    if paplay is None:
        raise PulseError("paplay is not on PATH; install it: sudo apt-get install pulseaudio-utils")
    env = dict(os.environ, **server.env)
    loop = f'while :; do "$0" --device={SINK} "$1" || sleep 0.1; done'
    with server.log.open("ab") as out:
        player = subprocess.Popen(["sh", "-c", loop, paplay, str(wav)], env=env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server.players.append(player)
    return player


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the process group this module started (the sh loop and its paplay)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
