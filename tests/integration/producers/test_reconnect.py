"""A live camera stream that drops is reopened with backoff, and frames resume."""

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from producers.camera import RECONNECTS, CameraProducer
from skysentry.config import CameraSettings


class MjpegCamera:
    """An IP camera on loopback: MJPEG over HTTP (multipart/x-mixed-replace), 20 fps.
    ``stop()`` closes the listening socket *and* every open stream, like a camera reboot."""

    def __init__(self) -> None:
        self.port = 0
        self._alive = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        alive = self._alive

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while alive.is_set():
                    jpg = cv2.imencode(".jpg", np.full((90, 160, 3), (i * 9) % 255, np.uint8))[1].tobytes()
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpg) + jpg + b"\r\n")
                    except OSError:
                        return
                    i += 1
                    time.sleep(0.05)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._alive.set()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._alive.clear()
        self._server.shutdown()
        self._server.server_close()


async def test_camera_reconnects_after_the_stream_drops(kafka, topics):
    ip_cam = MjpegCamera()
    ip_cam.start()
    cfg = CameraSettings(source=f"http://127.0.0.1:{ip_cam.port}/video.mjpg", camera_id="cam-ip", fps=10,
                         reconnect_initial_s=0.2, reconnect_max_s=1.0)
    producer = CameraProducer(cfg, kafka, topics)
    before = RECONNECTS.labels("cam-ip")._value.get()
    stop = asyncio.Event()
    task = asyncio.create_task(producer.run(stop))
    try:
        await asyncio.sleep(2.0)
        during_first = producer.seq
        assert during_first >= 5
        await asyncio.to_thread(ip_cam.stop)
        await asyncio.sleep(2.5)
        assert not task.done(), "the camera producer died when its stream dropped"
        while_down = producer.seq
        assert while_down - during_first <= 2  # nothing new while the camera is away
        await asyncio.to_thread(ip_cam.start)  # same port
        await asyncio.sleep(3.0)
        assert producer.seq - while_down >= 5, "frames did not resume after the camera came back"
        assert RECONNECTS.labels("cam-ip")._value.get() - before == 1  # reopened once, when it came back
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        ip_cam.stop()
