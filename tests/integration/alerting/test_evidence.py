"""Evidence end to end (issue 15): frames and audio windows on real topics, detections naming
them, the real alerting service, the real console (uvicorn on loopback) and the project's
loopback receivers standing in for the webhook, Slack, Twilio and Apprise.

A firing notification on every channel carries a signed link that, fetched from the console
over HTTP, returns the boxed JPEG (decoded here: the box is drawn where the detection says)
and that existed before the notification arrived; tampered, expired and unsigned links are
refused; the audio alert's links give a valid WAV and PNG.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import threading
import time
import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import httpx
import jsonschema
import numpy as np
import pytest
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from alerting.evidence import EvidenceSettings, signed_url
from console.app import build_app
from skysentry.bus import client_options
from skysentry.config import Settings
from skysentry.messages import AudioEvent, Box, Detection, FrameEvent, ModelRef, encode_audio, encode_frame, \
    encode_structured
from skysentry.schemas import SCHEMA_DIR

pytestmark = pytest.mark.integration

SECRET = "evidence-test-secret-0123456789"
W, H = 640, 480


class Console:
    """The console app under uvicorn in its own thread (Apprise fetches attachments with
    blocking requests, so the console must not share the alerting's event loop)."""

    def __init__(self, settings: EvidenceSettings):
        self.server = uvicorn.Server(uvicorn.Config(build_app(settings), host="127.0.0.1", port=0, log_config=None,
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "console did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def create(*names: str) -> None:
    admin = AIOKafkaAdminClient(**client_options(Settings().kafka))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names])
    finally:
        await admin.close()


def noise_jpeg(i: int) -> bytes:
    img = np.random.default_rng(i).integers(90, 160, (H, W, 3)).astype(np.uint8)  # grey: no red anywhere
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def box_for(i: int) -> Box:  # each frame's detection has its own box: the snapshot must show its frame's
    return Box(x1=0.1 + 0.03 * i, y1=0.3, x2=0.4 + 0.03 * i, y2=0.65, score=0.9, label="drone")


def is_red(px) -> bool:
    b, g, r = (int(v) for v in px[:3])
    return r > 170 and g < 110 and b < 110


def box_drawn(image: np.ndarray, box: Box) -> bool:
    h, w = image.shape[:2]
    x1, x2, y1, y2 = (round(box.x1 * (w - 1)), round(box.x2 * (w - 1)), round(box.y1 * (h - 1)),
                      round(box.y2 * (h - 1)))
    edges = [image[(y1 + y2) // 2, x1], image[(y1 + y2) // 2, x2], image[y1, (x1 + x2) // 2], image[y2, (x1 + x2) // 2]]
    return all(is_red(px) for px in edges) and not is_red(image[(y1 + y2) // 2, (x1 + x2) // 2])


def key_of(url: str) -> str:
    return urlsplit(url).path.removeprefix("/evidence/")


async def test_notifications_carry_signed_links_to_evidence_the_console_serves(make_settings, receiver, producer, kit,
                                                                               topics, uid, tmp_path):
    topics = topics.model_copy(update={"frames": f"t-{uid}.frames", "audio": f"t-{uid}.audio"})
    await create(topics.frames, topics.audio)
    store_dir = tmp_path / "evidence"
    evidence = EvidenceSettings(url=str(store_dir), secret=SECRET, capture_timeout=10)
    channels = {
        "hook": {"type": "webhook", "url": receiver.url("/hook"), "secret": "whsec"},
        "slack": {"type": "slack", "url": receiver.url("/slack/T/B/X")},
        "sms": {"type": "twilio", "base_url": receiver.url("/twilio"), "account_sid": "AC1", "auth_token": "tok",
                "from": "+15550100", "to": ["+15550111"], "mms": True},
        "apprise": {"type": "apprise", "urls": [f"json://127.0.0.1:{receiver.port}/apprise"]},
    }
    with Console(evidence) as console_url:
        settings = make_settings(channels, resolve_after=60.0)
        settings = settings.model_copy(update={
            "topics": topics, "evidence": evidence.model_copy(update={"public_url": console_url})})

        # the camera's frames and the microphone's windows, as the producers write them
        now = datetime.now(timezone.utc)
        frames = [FrameEvent(source="cam-7", site="north", time=now - timedelta(seconds=3 - 0.2 * i), seq=i,
                             width=W, height=H) for i in range(15)]
        for i, f in enumerate(frames):
            key, value, headers = encode_frame(f, noise_jpeg(i))
            await producer.send_and_wait(topics.frames, value, key=key, headers=headers)
        tone = (0.3 * 32767 * np.sin(2 * np.pi * 800 * np.arange(16000) / 16000)).astype(np.int16)
        windows = [AudioEvent(source="mic-7", site="south", time=now - timedelta(seconds=3 - 0.5 * i), seq=i,
                              samplerate=16000, samples=16000) for i in range(6)]
        for w in windows:
            key, value, headers = encode_audio(w, tone)
            await producer.send_and_wait(topics.audio, value, key=key, headers=headers)

        async with kit.running(settings):
            t_sent = time.time()
            detections = {}
            for i in range(4, 12):  # detections of frames 4..11, lineage to each frame
                d = Detection(site="north", source="cam-7", modality="vision", label="drone", score=0.8 + 0.01 * i,
                              boxes=[box_for(i)], model=ModelRef(name="vision-drone", version="3"),
                              input_event_id=frames[i].id, input_seq=i, captured_at=frames[i].time,
                              processed_at=datetime.now(timezone.utc))
                detections[d.id] = (i, d)
            for w in windows:
                d = Detection(site="south", source="mic-7", modality="audio", label="drone", score=0.9,
                              model=ModelRef(name="audio-drone", version="2"), input_event_id=w.id, input_seq=w.seq,
                              captured_at=w.time, processed_at=datetime.now(timezone.utc))
                detections[d.id] = (None, d)
            for d in [d for _, d in detections.values()]:
                value, headers = encode_structured(d, source="test/processor")
                await producer.send_and_wait(topics.detections, value, key=d.source.encode(), headers=headers)
            # two alerts (north vision, south audio) x hook, slack, sms, apprise
            got = await receiver.await_for(8, timeout=40)
        took = max(r.at for r in got) - t_sent

        async with httpx.AsyncClient(timeout=10) as http:
            async def fetch(url: str) -> httpx.Response:
                return await http.get(url)

            hooks = {r.json()["evidence"]["modality"]: r for r in receiver.requests("/hook")}
            assert set(hooks) == {"vision", "audio"}, [r.body[:200] for r in receiver.requests("/hook")]
            schema = json.loads((SCHEMA_DIR / "skysentry.webhook.v1.json").read_text())
            for r in hooks.values():
                jsonschema.validate(r.json(), schema)
                assert r.json()["version"] == "1.1"

            # --- vision: every channel's link serves the boxed frame of the alert's evidence detection
            doc = hooks["vision"].json()
            media = doc["evidence"]["media"]
            i, _ = detections[doc["evidence"]["detection_id"]]
            assert doc["evidence"]["input_event_id"] == frames[i].id
            assert [Box(**b) for b in doc["evidence"]["boxes"]] == [box_for(i)]
            slack = next(r for r in receiver.requests("/slack") if "north" in r.json()["text"])
            sms = next(r for r in receiver.requests("/twilio") if "north" in r.form()["Body"])
            image_blocks = [b for b in slack.json()["blocks"] if b["type"] == "image"]
            links = {"webhook": (hooks["vision"], media["snapshot"]), "slack": (slack, image_blocks[0]["image_url"]),
                     "sms": (sms, sms.form()["MediaUrl"])}
            assert len({url for _, url in links.values()}) == 1  # one stored snapshot, one link per decision
            for channel, (request, url) in links.items():
                assert url.startswith(console_url + "/evidence/"), (channel, url)
                stored = store_dir / key_of(url)
                assert stored.stat().st_mtime <= request.at, f"{channel}: evidence written after the notification"
                resp = await fetch(url)
                assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg", (channel, resp.text)
                snap = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)
                assert snap is not None and snap.shape == (H, W, 3)
                assert box_drawn(snap, box_for(i)), f"{channel}: no box where the detection says"
                assert not box_drawn(snap, box_for(i + 3 if i < 9 else i - 3))
            frame = await fetch(media["frame"])
            assert frame.status_code == 200 and frame.content == noise_jpeg(i)  # the original, byte for byte
            clip = await fetch(media["clip"])
            assert clip.status_code == 200 and clip.headers["content-type"] == "image/gif"
            ok, anim = cv2.imdecodeanimation(np.frombuffer(clip.content, np.uint8))
            assert ok and len(anim.frames) >= 5  # frames around it: 2 s before, what existed after

            # Apprise got the picture as an attachment (json:// posts it base64-encoded)
            app_doc = next(r.json() for r in receiver.requests("/apprise") if "north" in r.json().get("title", ""))
            attached = [base64.b64decode(a["base64"]) for a in app_doc.get("attachments", [])]
            assert attached == [(await fetch(media["snapshot"])).content], app_doc.keys()

            # --- refusals: tampered, extended, unsigned, expired; 404 only behind a valid signature
            url = media["snapshot"]
            q = parse_qs(urlsplit(url).query)
            base = url.split("?")[0]
            sig, exp = q["sig"][0], int(q["exp"][0])
            assert exp > time.time() + 3600
            bad_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
            for refused in (f"{base}?exp={exp}&sig={bad_sig}", f"{base}?exp={exp + 1}&sig={sig}", base,
                            f"{base}?exp={exp}", base.replace("snapshot.jpg", "frame.jpg") + f"?exp={exp}&sig={sig}",
                            signed_url(console_url, "another-secret", key_of(url), exp),
                            signed_url(console_url, SECRET, key_of(url), int(time.time()) - 1)):
                assert (await fetch(refused)).status_code == 403, refused
            missing = key_of(url).rsplit("/", 2)[0] + "/nope/snapshot.jpg"
            assert (await fetch(signed_url(console_url, SECRET, missing, exp))).status_code == 404
            assert (await fetch(console_url + "/healthz")).json() == {"status": "ok"}

            # --- audio: the window as WAV (the samples sent) and its spectrogram as PNG
            amedia = hooks["audio"].json()["evidence"]["media"]
            assert amedia["snapshot"] is None and amedia["clip"] is None
            wav = await fetch(amedia["audio"])
            assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
            with wave.open(io.BytesIO(wav.content)) as wf:
                assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (1, 2, 16000)
                assert np.array_equal(np.frombuffer(wf.readframes(wf.getnframes()), "<i2"), tone)
            png = await fetch(amedia["spectrogram"])
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            img = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape[0] == 256
            aslack = next(r for r in receiver.requests("/slack") if "south" in r.json()["text"])
            assert [b["image_url"] for b in aslack.json()["blocks"] if b["type"] == "image"] == [amedia["spectrogram"]]

        meta = json.loads((store_dir / key_of(media["snapshot"])).with_name("meta.json").read_text())
        decided = datetime.fromisoformat(doc["decided_at"]).timestamp()
        stored_at = datetime.fromisoformat(meta["stored_at"]).timestamp()
        print(f"\nevidence: detections sent -> last notification {took:.2f} s; decision -> vision evidence stored "
              f"{stored_at - decided:.3f} s; files {sorted(os.listdir(store_dir / key_of(url).rsplit('/', 1)[0]))}")
