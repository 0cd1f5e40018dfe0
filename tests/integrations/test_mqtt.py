"""``edgerun stream --mqtt`` against a real mosquitto broker started here (127.0.0.1, a free port,
persistence in tmp) and a paho subscriber that checks every message: the event schema, the events
recomputed from the stream's own ``--json`` (tracker ids per frame), snapshots decoding as JPEG,
Home Assistant discovery payloads, retained counts; then a broker restart mid-stream (the stream
goes on, events resume, every event accounted for). Skips with a reason without mosquitto or
paho-mqtt (CI installs both: .ci/apt-packages.txt, the `mqtt` extra)."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_file

from edgerun.runtime.cli import main

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'edgerun[mqtt]')")
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (Debian package "
                                "mosquitto, listed in .ci/apt-packages.txt)")

MODEL = ("models", "yolov8n_320_int8dyn.onnx")
EVENT_KEYS = {"type", "seq", "track_id", "label", "class_id", "score", "box", "frame", "frame_time", "image_size",
              "first_frame", "top_score", "hits", "source", "time"}
TRACK_BUFFER = 30  # ByteTracker's default: results a lost track is kept before it ends


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port with persistence in ``folder`` (a restart keeps the sessions)."""

    def __init__(self, folder: Path):
        self.port, self.folder = _free_port(), folder
        (folder / "db").mkdir()
        self.conf = folder / "mosquitto.conf"
        # user: as root (CI) mosquitto would switch to user mosquitto, which cannot write in our tmp
        # folder (no persistence database, no log); the current user keeps it (ignored when not root).
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder / 'db'}/\nlog_dest file {folder / 'broker.log'}\n"
                             f"user {getpass.getuser()}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited {self.proc.returncode}: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean stop saves the persistence database
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            assert (self.folder / "db" / "mosquitto.db").exists(), "mosquitto saved no persistence database"


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Subscriber:
    """Every message on ``#`` (QoS 1, persistent session: a broker restart loses nothing)."""

    def __init__(self, port: int, client_id: str = "main"):
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgerun-test-{client_id}-{os.getpid()}",
                             clean_session=False)
        self.c.reconnect_delay_set(0.2, 1)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        end = time.monotonic() + 5
        while not self.c.is_connected() and time.monotonic() < end:
            time.sleep(0.02)

    @staticmethod
    def _on_connect(c, _u, flags, *_) -> None:
        if not flags.session_present:  # a resumed session keeps its subscription (no retained replay)
            c.subscribe("#", qos=1)

    def _on(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[float, str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _settle(sub: Subscriber, quiet: float = 0.5, limit: float = 10.0) -> None:
    """Wait until no message arrived for ``quiet`` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        msgs = sub.snapshot()
        if msgs and time.monotonic() - msgs[-1][0] > quiet:
            return
        time.sleep(0.1)


def _expected_events(frames: list[dict], update_every: float) -> list[tuple[str, int, int]]:
    """(type, track_id, frame) the stream must have published, recomputed from its --json lines:
    new on a tracker id's first frame; update when seen again >= update_every s of frame time after
    the last new/update; end after TRACK_BUFFER results unseen, the rest at the end of the stream."""
    out, tracks = [], {}  # tid -> [last sent time, results seen at, last frame]
    for n, rec in enumerate(frames, 1):
        for d in rec["detections"]:
            tid = d.get("tracker_id", -1)
            if tid < 0:
                continue
            if tid not in tracks:
                tracks[tid] = [rec["timestamp"], n, rec["frame"]]
                out.append(("new", tid, rec["frame"]))
                continue
            t = tracks[tid]
            t[1], t[2] = n, rec["frame"]
            if rec["timestamp"] - t[0] >= update_every:
                t[0] = rec["timestamp"]
                out.append(("update", tid, rec["frame"]))
        for tid in [k for k, t in tracks.items() if n - t[1] > TRACK_BUFFER]:
            out.append(("end", tid, tracks.pop(tid)[2]))
    out += [("end", tid, t[2]) for tid, t in tracks.items()]
    return sorted(out)


def _check_messages(msgs, prefix: str, frames: list[dict], update_every: float, strict_counts: bool = True) -> dict:
    """Check every message; returns counts per kind. ``strict_counts``: the count topic steps exactly
    with the events (after a reconnect the current counts are announced again, possibly before the
    queued older ones are resent: then only their values and the final 0 are checked)."""
    by_frame = {r["frame"]: {d["tracker_id"]: d for d in r["detections"] if d.get("tracker_id", -1) >= 0}
                for r in frames}
    events, snaps, counts, discovery, status, other = {}, [], {}, {}, [], []
    for _, topic, payload, _retain in msgs:
        if topic == f"{prefix}/events":
            e = json.loads(payload)
            assert set(e) - {"reason", "snapshot_topic"} == EVENT_KEYS, e
            assert e["type"] in ("new", "update", "end")
            prev = events.setdefault(e["seq"], e)  # QoS 1 is at least once: a duplicate must be equal
            assert {k: v for k, v in prev.items() if k != "time"} == {k: v for k, v in e.items() if k != "time"}
            d = by_frame[e["frame"]][e["track_id"]]  # the track is in that frame of --json
            assert np.allclose(e["box"], d["xyxy"], atol=0.06) and abs(e["score"] - d["confidence"]) < 1e-4
            assert e["image_size"] == [frames[0]["width"], frames[0]["height"]]
            assert (e["type"] == "end") == ("reason" in e) and (e["type"] == "new") == ("snapshot_topic" in e)
        elif topic.endswith("/snapshot"):
            img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
            assert payload[:2] == b"\xff\xd8" and img is not None and img.shape[:2] == (frames[0]["height"],
                                                                                         frames[0]["width"])
            snaps.append(topic)
        elif topic.endswith("/count"):
            counts.setdefault(topic, []).append(int(payload))
        elif topic.startswith("homeassistant/"):
            cfg = json.loads(payload)
            component = topic.split("/")[1]
            assert topic == f"homeassistant/{component}/edgerun_{prefix}/{cfg['object_id']}/config"
            assert cfg["availability_topic"] == f"{prefix}/status" and cfg["device"]["identifiers"] == [f"edgerun_{prefix}"]
            state = cfg["topic"] if component == "camera" else cfg["state_topic"]
            assert state.startswith(f"{prefix}/") and cfg["unique_id"].startswith(f"edgerun_{prefix}_")
            if component == "binary_sensor":
                assert cfg["device_class"] == "occupancy" and "value | int > 0" in cfg["value_template"]
            discovery[topic] = cfg
        elif topic == f"{prefix}/status":
            status.append(payload.decode())
        else:
            other.append(topic)
    assert not other, other
    seqs = sorted(events)
    assert seqs == list(range(len(seqs))), "an event is missing (seq numbers have a hole)"
    got = sorted((e["type"], e["track_id"], e["frame"]) for e in events.values())
    assert got == _expected_events(frames, update_every)
    news = [e for e in events.values() if e["type"] == "new"]
    labels = {e["label"] for e in news}
    assert sorted(snaps) == sorted(e["snapshot_topic"] for e in news)
    assert {cfg["unique_id"] for cfg in discovery.values()} == {f"edgerun_{prefix}_{lab}_{k}" for lab in labels
                                                                for k in ("count", "occupancy", "snapshot")}
    for lab in labels:  # the count steps with each new/end; ends at 0 (every track ended)
        steps = [1 if e["type"] == "new" else -1 for e in sorted(events.values(), key=lambda e: e["seq"])
                 if e["label"] == lab and e["type"] != "update"]
        running = [int(c) for c in np.cumsum(steps)]
        got = counts[f"{prefix}/{lab}/count"]
        if strict_counts:
            assert got == running, (lab, got, running)
        assert set(got) <= set(running) | {0} and got[-1] == 0 and min(running) >= 0
    assert status[0] == "online" and status[-1] == "offline"
    kinds = {k: sum(e["type"] == k for e in events.values()) for k in ("new", "update", "end")}
    return {**kinds, "events": len(events), "snapshots": len(snaps), "tracks": len(news),
            "discovery": len(discovery), "labels": sorted(labels), "messages": len(msgs)}


def _summary(err: str) -> str:
    return next(line for line in err.splitlines() if line.startswith("edgerun: mqtt "))


def test_events_snapshots_discovery_match_the_stream(broker, capsys):
    model, video = shared_file(*MODEL), shared_file("video", "vtest.avi")
    sub = Subscriber(broker.port)
    try:
        code = main(["stream", str(model), str(video), "--max-frames", "80", "--json",
                     "--mqtt", f"mqtt://127.0.0.1:{broker.port}/cam1", "--mqtt-update", "1"])
        _settle(sub)
        msgs = sub.snapshot()
    finally:
        sub.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["frame"] for f in frames] == list(range(80))
    got = _check_messages(msgs, "cam1", frames, 1.0)
    assert got["tracks"] >= 5 and got["update"] > got["tracks"]  # vtest: pedestrians walking through
    line = _summary(err)
    assert (f"{got['new']} new, {got['update']} update, {got['end']} end, {got['snapshots']} snapshot" in line
            and ", 0 dropped, 0 unacknowledged, 0 reconnect(s)" in line), line
    # What a late subscriber (Home Assistant starting now) finds retained: the discovery configs,
    # the counts (all 0: every track ended), the last snapshot per label and the status (offline).
    late = Subscriber(broker.port, client_id="late")
    try:
        _settle(late)
        kept = {t: (p, r) for _, t, p, r in late.snapshot()}
    finally:
        late.close()
    labels = got["labels"]
    assert all(r for _, r in kept.values()) and kept["cam1/status"][0] == b"offline"
    assert {t for t in kept if t.startswith("homeassistant/")} == {
        f"homeassistant/{c}/edgerun_cam1/{lab}_{k}/config" for lab in labels
        for c, k in (("sensor", "count"), ("binary_sensor", "occupancy"), ("camera", "snapshot"))}
    assert {t: p for t, (p, _) in kept.items() if t.endswith("/count")} == {f"cam1/{lab}/count": b"0" for lab in labels}
    assert {t for t in kept if t.endswith("/snapshot")} == {f"cam1/{lab}/snapshot" for lab in labels}
    print(f"MQTT: 80 frames, {got}")


def test_broker_restart_mid_stream(broker, capsys):
    """The broker stops (SIGTERM) for 2 s mid-stream: frames go on, paho reconnects, the queued
    QoS 1 events arrive after the restart; every frame is a result and every event arrives."""
    model, video = shared_file(*MODEL), shared_file("video", "vtest.avi")
    sub = Subscriber(broker.port)
    restart: dict[str, float] = {}

    def watch() -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if any(t.endswith("/events") and json.loads(p)["frame"] >= 30 for _, t, p, _ in sub.snapshot()):
                broker.stop()
                # stamped once the broker has exited: what it was still delivering before (on a quiet
                # machine, an event in flight) reaches the subscriber's callback within the grace below
                restart["down"] = time.monotonic() + 0.25
                time.sleep(2.0)
                broker.start()
                restart["up"] = time.monotonic()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        code = main(["stream", str(model), str(video), "--max-frames", "120", "--max-fps", "15", "--json",
                     "--mqtt", f"mqtt://127.0.0.1:{broker.port}/cam2"])
        watcher.join(10)
        _settle(sub, quiet=1.0)
        msgs = sub.snapshot()
    finally:
        sub.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "up" in restart, "the broker was not restarted mid-stream (the stream ended first?)"
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["frame"] for f in frames] == list(range(120))  # no frame lost to the outage
    assert "edgerun: mqtt_disconnected:" in err and "edgerun: mqtt_connected:" in err, err
    line = _summary(err)
    assert ", 0 dropped, 0 unacknowledged, 1 reconnect(s)" in line, line
    got = _check_messages(msgs, "cam2", frames, 1.0, strict_counts=False)
    events = [(t0, json.loads(p)) for t0, t, p, _ in msgs if t.endswith("/events")]
    during = [e for t0, e in events if restart["down"] <= t0 <= restart["up"]]
    after = [e for t0, e in events if t0 > restart["up"]]
    gap = max(b[0] - a[0] for a, b in zip(events, events[1:]))
    assert not during and after, "events kept arriving while the broker was down, or never resumed"
    outage = float(line.split("(outages ")[1].split(" s)")[0])
    assert 2.0 <= outage <= 2.0 + 8.0, line
    print("\n".join(x for x in err.splitlines() if x.startswith("edgerun: mqtt")))
    print(f"MQTT restart: broker down {restart['up'] - restart['down']:.2f} s, publisher outage {outage:.2f} s, "
          f"largest gap between events at the subscriber {gap:.2f} s; {got}")


@pytest.mark.parametrize("url,why", [
    ("http://127.0.0.1:1883/x", "expected mqtt://HOST[:PORT][/PREFIX]"),
    ("mqtts://127.0.0.1/x", "TLS is not supported yet"),
    ("mqtt://127.0.0.1:99999/x", "port must be a number"),
    ("mqtt:///x", "no host"),
    ("mqtt://127.0.0.1/a/+/b", "must be plain topic levels"),
    ("mqtt://127.0.0.1:{free}/x", "Connection refused"),
])
def test_bad_url_or_refused_broker_is_one_line_exit_2(url, why, capsys):
    """Refused before the model or the source is opened (a missing video is never reached)."""
    url = url.format(free=_free_port())
    assert main(["stream", "no-such-model.onnx", "no-such-video.mp4", "--mqtt", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgerun: error: --mqtt ") and why in err[0], err


def test_outage_beyond_the_queue_is_dropped_and_counted(broker):
    """max_queued 8, QoS 1, the broker stopped: messages past the 8 held (unacknowledged) ones are
    dropped and counted; after the restart the held ones arrive and the counters add up."""
    from edgerun.runtime.integrations.mqtt import MqttPublisher
    from edgerun.runtime.results import Detections
    from edgerun.runtime.streaming.stages import StreamResult

    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/q", names=("person",), max_queued=8, snapshots=False)
    pub.connect()
    sub = Subscriber(broker.port)
    try:
        def frame(i: int, n: int) -> StreamResult:
            det = Detections(np.tile(np.array([[10, 10, 50, 90]], np.float32), (n, 1)) + np.arange(n, dtype=np.float32)[:, None] * 60,
                             np.full(n, 0.9, np.float32), np.zeros(n, np.int64), tracker_id=np.arange(1, n + 1) + 10 * i,
                             image_shape=(480, 640))
            return StreamResult(i, float(i), 0.0, det)
        pub.write(frame(0, 2))  # 2 new + 2 count + 3 discovery (+ 1 status): connected, all sent
        _settle(sub)
        broker.stop()
        end = time.monotonic() + 5
        while pub.stats()["reconnects"] == 0 and not pub.outages and time.monotonic() < end:
            time.sleep(0.05)
        assert pub.outages, "the publisher did not notice the broker going away"
        st0 = pub.stats()
        assert not st0["dropped"], st0
        pub.write(frame(1, 6))  # 6 new + 6 counts = 12 messages: the queue holds 8, the rest dropped
        st = pub.stats()
        assert st["unacked"] == 8 and sum(st["dropped"].values()) == 12 - (8 - st0["unacked"]), st
        broker.start()
        end = time.monotonic() + 10
        while pub.unacked() and time.monotonic() < end:
            time.sleep(0.05)
        assert pub.unacked() == 0 and pub.stats()["reconnects"] == 1
        _settle(sub)
        got = [json.loads(p)["seq"] for _, t, p, _ in sub.snapshot() if t == "q/events"]
        assert set(got) >= {0, 1} and len(set(got)) == 2 + (6 - st["dropped"].get("new", 0))
    finally:
        pub.close(timeout=2)
        sub.close()
