"""Evidence (issue 15): the store on a directory and on fsspec's memory filesystem, retention by
age and by size, signed links (tampered, expired, wrong key), and what is rendered: the boxed
snapshot, the clip, the audio window as WAV and its log-mel spectrogram as PNG."""

from __future__ import annotations

import io
import time
import uuid
import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from alerting.capture import draw_boxes, log_mel, render_audio, render_vision, spectrogram_png
from alerting.evidence import EvidenceSettings, EvidenceStore, check_key, signature, signed_url, verify
from alerting.notification import Evidence
from skysentry.messages import AudioEvent, Box, FrameEvent, encode_audio, encode_frame


@pytest.fixture(params=["dir", "memory"])
def store(request, tmp_path) -> EvidenceStore:
    if request.param == "dir":
        yield EvidenceStore(str(tmp_path / "evidence"))
        return
    url = f"memory://evidence-{uuid.uuid4().hex[:8]}"
    yield EvidenceStore(url)
    import fsspec

    fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)


def test_store_round_trip_and_missing(store):
    store.put("a1/d1/snapshot.jpg", b"jpeg-bytes")
    assert store.get("a1/d1/snapshot.jpg") == b"jpeg-bytes"
    assert store.get("a1/d2/snapshot.jpg") is None and not store.exists("a1/d2/snapshot.jpg")
    assert [s.prefix for s in store.sets()] == ["a1/d1"] and store.sets()[0].size == 10
    if store.local:  # nothing half-written is left beside it
        assert sorted(p.name for p in Path(store.root, "a1/d1").iterdir()) == ["snapshot.jpg"]


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../b/c.jpg", "/abs/x/y.jpg", "a/b", "a/b/c/d.jpg", "a/b/.x.jpg",
                                 "a/b/c d.jpg", ""])
def test_keys_outside_the_layout_are_refused(bad):
    with pytest.raises(ValueError):
        check_key(bad)


def test_retention_removes_old_sets_then_the_oldest_until_the_rest_fit(store):
    for i in range(5):
        store.put(f"alert{i}/det{i}/frame.jpg", bytes(1000))
        store.put(f"alert{i}/det{i}/meta.json", b"{}")
        time.sleep(0.02)  # distinct times: oldest first
    now = time.time()
    # by age: nothing is a day old yet; an hour later than "now + 1 day" all are
    assert store.prune(86400, 10**9, now=now).removed == 0
    # by size: 5 x 1002 bytes, keep at most 2500: the three oldest go
    pruned = store.prune(86400, 2500, now=now)
    assert (pruned.removed, pruned.kept, pruned.kept_bytes) == (3, 2, 2004)
    assert [s.prefix for s in store.sets()] == ["alert3/det3", "alert4/det4"]
    assert store.get("alert0/det0/frame.jpg") is None and store.get("alert4/det4/frame.jpg") == bytes(1000)
    # by age
    assert store.prune(3600, 10**9, now=now + 7200).removed == 2
    assert store.sets() == []


def test_signed_links_die_when_tampered_or_expired():
    key, secret = "0190aa/6d1b/snapshot.jpg", "s3cret-key"
    exp = int(time.time()) + 60
    url = signed_url("https://console.example/", secret, key, exp)
    assert url == f"https://console.example/evidence/{key}?exp={exp}&sig={signature(secret, key, exp)}"
    sig = signature(secret, key, exp)
    assert verify(secret, key, str(exp), sig)
    assert not verify(secret, key, str(exp + 1), sig)  # a longer life is not for sale
    assert not verify(secret, "0190aa/6d1b/frame.jpg", str(exp), sig)  # nor another file
    assert not verify("other-secret", key, str(exp), sig)
    assert not verify(secret, key, str(exp), sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    assert not verify(secret, key, str(exp), None) and not verify(secret, key, None, sig)
    assert not verify(secret, key, "12x", sig)
    past = int(time.time()) - 1
    assert not verify(secret, key, str(past), signature(secret, key, past))


def _frame(w=640, h=480) -> bytes:
    rng = np.random.default_rng(1)
    img = (rng.integers(90, 160, (h, w, 3))).astype(np.uint8)  # grey noise: no red anywhere
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _record(event, value, headers):
    return SimpleNamespace(value=value, headers=headers, key=event.source.encode())


def is_red(px) -> bool:
    b, g, r = (int(v) for v in px)
    return r > 170 and g < 110 and b < 110


def test_snapshot_has_the_boxes_drawn_where_the_detection_says_and_the_clip_moves():
    t0 = datetime.now(timezone.utc)
    events = [FrameEvent(source="cam-1", time=t0 + timedelta(seconds=0.2 * i), seq=i, width=640, height=480)
              for i in range(10)]
    records = [_record(e, *encode_frame(e, _frame())[1:]) for e in events]
    target = records[5]
    box = Box(x1=0.25, y1=0.3, x2=0.6, y2=0.7, score=0.93, label="drone")
    ev = Evidence(detection_id="d", input_event_id=events[5].id, source="cam-1", modality="vision", score=0.93,
                  boxes=[box], captured_at=events[5].time)
    files = render_vision(target, records, ev, EvidenceSettings())
    assert set(files) == {"snapshot.jpg", "frame.jpg", "clip.gif"}
    assert files["frame.jpg"] == target.value  # the original, byte for byte
    snap = cv2.imdecode(np.frombuffer(files["snapshot.jpg"], np.uint8), cv2.IMREAD_COLOR)
    orig = cv2.imdecode(np.frombuffer(files["frame.jpg"], np.uint8), cv2.IMREAD_COLOR)
    assert snap.shape == orig.shape == (480, 640, 3)
    x1, y1, x2, y2 = (round(0.25 * 639), round(0.3 * 479), round(0.6 * 639), round(0.7 * 479))
    ym, xm = (y1 + y2) // 2, (x1 + x2) // 2
    for px in (snap[ym, x1], snap[ym, x2], snap[y1, xm], snap[y2, xm]):  # the four edges
        assert is_red(px), px
    assert not is_red(snap[ym, xm]) and not is_red(snap[10, 10])  # inside and far outside: untouched
    assert not any(is_red(orig[y, x]) for y, x in ((ym, x1), (ym, x2), (y1, xm), (y2, xm)))
    ok, anim = cv2.imdecodeanimation(np.frombuffer(files["clip.gif"], np.uint8))
    assert ok and len(anim.frames) == 10 and anim.frames[0].shape[1] == 480  # scaled to clip_width
    # the clip's evidence frame has the box, its neighbours do not
    sx = 480 / 640
    assert is_red(anim.frames[5][round(ym * sx), round(x1 * sx)][:3])
    assert not is_red(anim.frames[4][round(ym * sx), round(x1 * sx)][:3])


def test_a_single_frame_gives_no_clip():
    e = FrameEvent(source="cam-1", time=datetime.now(timezone.utc), seq=0, width=640, height=480)
    r = _record(e, *encode_frame(e, _frame())[1:])
    ev = Evidence(detection_id="d", input_event_id=e.id, source="cam-1", modality="vision", box=[0.1, 0.1, 0.2, 0.2],
                  score=0.8, captured_at=e.time)
    assert set(render_vision(r, [r], ev, EvidenceSettings())) == {"snapshot.jpg", "frame.jpg"}


def test_audio_window_as_wav_and_log_mel_png():
    sr = 16000
    t = np.arange(sr) / sr
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)  # a 1 kHz tone
    event = AudioEvent(source="mic-1", time=datetime.now(timezone.utc), seq=0, samplerate=sr, samples=sr)
    _, value, headers = encode_audio(event, pcm)
    files = render_audio(SimpleNamespace(value=value, headers=headers))
    with wave.open(io.BytesIO(files["window.wav"])) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, sr, sr)
        assert np.array_equal(np.frombuffer(w.readframes(sr), "<i2"), pcm)
    png = cv2.imdecode(np.frombuffer(files["spectrogram.png"], np.uint8), cv2.IMREAD_COLOR)
    assert files["spectrogram.png"][:8] == b"\x89PNG\r\n\x1a\n" and png.shape[0] == 64 * 4 and png.shape[1] > 300
    # the tone's mel band is the loudest in every frame
    db = log_mel(pcm, sr)
    assert db.shape[0] == 64
    band = int(np.bincount(db.argmax(axis=0)).argmax())
    hz = 700 * (10 ** (np.linspace(2595 * np.log10(1 + 50 / 700), 2595 * np.log10(1 + 8000 / 700), 66)[band + 1]
                       / 2595) - 1)
    assert 850 < hz < 1150, hz
    # and it is drawn bright in the PNG's row for that band (low frequencies at the bottom)
    row = png.shape[0] - 1 - band * 4 - 2
    assert png[row].astype(int).sum() > png[4].astype(int).sum()
    assert spectrogram_png(np.zeros(sr, np.int16), sr)[:4] == b"\x89PNG"  # silence renders too


def test_draw_boxes_labels_each_box():
    img = np.full((200, 300, 3), 128, np.uint8)
    draw_boxes(img, [Box(x1=0.1, y1=0.4, x2=0.3, y2=0.6, score=0.5, label="bird"),
                     Box(x1=0.6, y1=0.4, x2=0.9, y2=0.9, score=0.9, label="drone")])
    assert is_red(img[100, round(0.1 * 299)]) and is_red(img[150, round(0.6 * 299)])
    assert (img[:round(0.4 * 199), :] != 128).any()  # a label above the boxes
