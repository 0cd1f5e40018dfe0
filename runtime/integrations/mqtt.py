"""MQTT events from a stream: per-track ``new``/``update``/``end``, JPEG snapshots, per-label counts
and Home Assistant discovery (``edgerun stream MODEL SOURCE --mqtt mqtt://host:1883/prefix``).

    pub = MqttPublisher("mqtt://127.0.0.1:1883/garage", names=model.spec.names)
    pub.connect()                      # MqttError (one line) for a bad URL, refused or unreachable broker
    for r in runner.results():         # results carrying tracker_id (a ByteTracker on the runner)
        pub.write(r)
    stats = pub.close()                # ends the open tracks, flushes, says offline

Topics (``P`` = the URL's path, default ``edgerun``; ``L`` = a label as a topic-safe slug):
``P/events`` JSON per track event (``seq`` numbers every event of the run from 0); ``P/L/snapshot``
(retained) the JPEG of the frame where a track appeared, its boxes drawn; ``P/L/count`` (retained)
the number of open tracks of that label; ``P/status`` (retained) ``online``/``offline`` (also the
last will). Home Assistant discovery (retained, under ``homeassistant/``): a ``sensor`` (count),
a ``binary_sensor`` (occupancy) and a ``camera`` (snapshot) per label, announced when the label is
first seen, again on every (re)connect and when Home Assistant says ``online`` on
``homeassistant/status``.

Broker loss: paho reconnects in the background (0.5 s, doubling to 2 s between attempts) while
frames keep being processed. QoS 1/2 messages published meanwhile wait in paho's queue and are
sent on reconnect (at least once: a subscriber may see a duplicate, ``seq`` tells); the queue holds
at most ``max_queued`` unacknowledged messages (in flight or waiting; a bound on bursts too), a
message beyond that is **dropped and counted** (QoS 0: every message published while disconnected
is dropped and counted).
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import numpy as np

from edgerun.kernels.errors import EdgerunError

from . import require

__all__ = ["MqttError", "MqttTarget", "MqttPublisher", "TrackEvents", "parse_url", "slug"]

EVENT_KINDS = ("new", "update", "end")


class MqttError(EdgerunError):
    """The broker cannot be used: a bad URL, a refused or unreachable connection, a rejected login."""


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    prefix: str
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        return f"mqtt://{self.host}:{self.port}/{self.prefix}"


def parse_url(url: str) -> MqttTarget:
    """``mqtt://[user[:password]@]host[:port][/prefix]`` -> MqttTarget (port 1883, prefix edgerun)."""
    parts = urlsplit(str(url))
    if parts.scheme != "mqtt":
        hint = " (TLS is not supported yet)" if parts.scheme == "mqtts" else ""
        raise MqttError(f"--mqtt {url}: expected mqtt://HOST[:PORT][/PREFIX]{hint}")
    try:
        port = parts.port or 1883
    except ValueError:
        raise MqttError(f"--mqtt {url}: the port must be a number 1-65535") from None
    if not parts.hostname:
        raise MqttError(f"--mqtt {url}: no host; expected mqtt://HOST[:PORT][/PREFIX]")
    prefix = parts.path.strip("/") or "edgerun"
    if any(c in prefix for c in "+#\0") or "" in prefix.split("/") or parts.query or parts.fragment:
        raise MqttError(f"--mqtt {url}: the prefix {prefix!r} must be plain topic levels "
                        "(no +, #, empty levels, ?query or #fragment)")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return MqttTarget(parts.hostname, port, prefix, user, password)


def slug(text: str) -> str:
    """A label as a topic level / Home Assistant object id: ``[a-zA-Z0-9_-]`` only."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_").lower() or "unnamed"


class TrackEvents:
    """Per-track events from results in frame order (no MQTT involved).

    A ``tracker_id`` seen for the first time is ``new``; seen again ``update``, at most once per
    ``update_every`` seconds of frame time; a track unseen for more than ``track_buffer`` results
    (ByteTracker's rule for removing a lost track) is ``end`` (``reason`` "lost"); ``finish()``
    ends the rest ("stream_end"). A track keeps the label it was first seen with."""

    def __init__(self, names: tuple[str, ...] = (), track_buffer: int = 30, update_every: float = 1.0):
        self.names, self.track_buffer, self.update_every = tuple(names), int(track_buffer), float(update_every)
        self.tracks: dict[int, dict[str, Any]] = {}
        self.frames = 0

    def label(self, class_id: int) -> str:
        return self.names[class_id] if 0 <= class_id < len(self.names) else str(class_id)

    def feed(self, r) -> list[dict[str, Any]]:
        """Events for one result (``StreamResult`` with tracked ``detections``)."""
        det = r.detections
        if det is None:
            return []
        self.frames += 1
        ids = det.tracker_id if det.tracker_id is not None else np.full(len(det), -1, np.int64)
        h, w = det.image_shape
        out = []
        for i in np.flatnonzero(ids >= 0):
            tid, cid = int(ids[i]), int(det.class_id[i])
            obs = {"score": round(float(det.confidence[i]), 4), "box": [round(float(v), 1) for v in det.xyxy[i]],
                   "frame": int(r.index), "frame_time": round(float(r.timestamp), 6), "image_size": [int(w), int(h)]}
            t = self.tracks.get(tid)
            if t is None:
                t = self.tracks[tid] = {"track_id": tid, "label": self.label(cid), "class_id": cid,
                                        "first_frame": obs["frame"], "top_score": obs["score"], "hits": 0,
                                        "sent_time": obs["frame_time"], "seen": self.frames}
                t.update(obs, hits=1)
                out.append(self._event("new", t))
                continue
            t.update(obs, hits=t["hits"] + 1, seen=self.frames, top_score=max(t["top_score"], obs["score"]))
            if obs["frame_time"] - t["sent_time"] >= self.update_every:
                t["sent_time"] = obs["frame_time"]
                out.append(self._event("update", t))
        for tid in [k for k, t in self.tracks.items() if self.frames - t["seen"] > self.track_buffer]:
            out.append(self._event("end", self.tracks.pop(tid), reason="lost"))
        return out

    def finish(self) -> list[dict[str, Any]]:
        """``end`` for every open track (the stream is over)."""
        out = [self._event("end", t, reason="stream_end") for t in self.tracks.values()]
        self.tracks.clear()
        return out

    def open_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tracks.values():
            counts[t["label"]] = counts.get(t["label"], 0) + 1
        return counts

    @staticmethod
    def _event(kind: str, t: dict[str, Any], **extra: Any) -> dict[str, Any]:
        keys = ("track_id", "label", "class_id", "score", "box", "frame", "frame_time", "image_size",
                "first_frame", "top_score", "hits")
        return {"type": kind, **{k: t[k] for k in keys}, **extra}


class MqttPublisher:
    """Publishes a stream's track events to an MQTT broker (see the module docstring for topics).

    ``qos`` 0/1/2 for every message; ``max_queued``: unacknowledged messages paho may hold (the
    outage buffer; beyond it messages are dropped and counted); ``update_every``: seconds of frame
    time between two ``update`` events of one track; ``track_buffer``: the tracker's (results a lost
    track is kept); ``snapshots``: JPEG per new track; ``on_event(kind, detail)``: connection events
    (``mqtt_connected``, ``mqtt_disconnected``); ``model``: named in the Home Assistant device."""

    def __init__(self, url: str, *, names: tuple[str, ...] = (), qos: int = 1, max_queued: int = 1000,
                 update_every: float = 1.0, track_buffer: int = 30, snapshots: bool = True,
                 discovery_prefix: str = "homeassistant", model: str = "", connect_timeout: float = 5.0,
                 on_event: Callable[[str, str], None] | None = None, client_id: str | None = None):
        self.target = parse_url(url)
        if qos not in (0, 1, 2):
            raise MqttError(f"--mqtt-qos {qos}: expected 0, 1 or 2")
        if int(max_queued) < 1:
            raise MqttError(f"--mqtt-queue {max_queued}: expected >= 1 message")
        if not update_every > 0:
            raise MqttError(f"--mqtt-update {update_every}: expected a positive number of seconds")
        self.qos, self.max_queued, self.snapshots = int(qos), int(max_queued), bool(snapshots)
        self.discovery_prefix, self.model, self.connect_timeout = discovery_prefix, model, float(connect_timeout)
        self.on_event = on_event
        self.client_id = client_id or f"edgerun-{socket.gethostname()}-{os.getpid()}"
        self.events = TrackEvents(names, track_buffer, update_every)
        p = self.target.prefix
        self.node = "edgerun_" + slug(p)
        self.status_topic = f"{p}/status"
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}  # label -> slug, announced to Home Assistant
        self._counts: dict[str, int] = {}
        self._seq = 0
        self.sent: dict[str, int] = {}      # kind -> messages accepted (sent or queued for resend)
        self.dropped: dict[str, int] = {}   # kind -> messages dropped (queue full / QoS 0 offline)
        self.acked = 0
        self.connects = 0
        self.outages: list[tuple[float, float | None]] = []  # (disconnected, reconnected) monotonic
        self._connected = threading.Event()
        self._closing = False
        self._refused: str | None = None
        self._client = None

    # -- connection ---------------------------------------------------------------------------
    def connect(self) -> MqttPublisher:
        """Connect (blocking up to ``connect_timeout``) and start paho's network thread."""
        mqtt = require("paho.mqtt.client", "mqtt", "--mqtt", "paho-mqtt")
        t = self.target
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        if t.username is not None:
            c.username_pw_set(t.username, t.password)
        c.will_set(self.status_topic, "offline", qos=self.qos, retain=True)
        c.max_queued_messages_set(self.max_queued)
        c.reconnect_delay_set(0.5, 2)  # type: ignore[arg-type] - paho sleeps a float fine
        c.connect_timeout = self.connect_timeout
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_publish, c.on_message = self._on_publish, self._on_message
        try:
            c.connect(t.host, t.port, keepalive=15)
        except socket.gaierror as exc:
            raise MqttError(f"--mqtt {t}: cannot resolve host {t.host!r} ({exc.strerror})") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise MqttError(f"--mqtt {t}: cannot connect to the broker at {t.host}:{t.port} ({why}); "
                            "is it running (e.g. mosquitto) and listening there?") from None
        self._client = c
        c.loop_start()
        if not self._connected.wait(self.connect_timeout) or self._refused:
            c.loop_stop()
            c.disconnect()
            why = self._refused or f"no answer within {self.connect_timeout:g} s"
            raise MqttError(f"--mqtt {t}: the broker did not accept the connection ({why})")
        return self

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._connected.set()
            return
        with self._lock:
            self.connects += 1
            if self.outages and self.outages[-1][1] is None:
                self.outages[-1] = (self.outages[-1][0], time.monotonic())
            again = self.connects > 1
        self._connected.set()
        client.subscribe(f"{self.discovery_prefix}/status", qos=self.qos)
        self._announce()
        if again and self.on_event is not None:
            gap = self.outages[-1][1] - self.outages[-1][0] if self.outages else 0.0
            self.on_event("mqtt_connected", f"{self.target}: reconnected after {gap:.1f} s")

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        if self._closing:
            return
        with self._lock:
            if not self.outages or self.outages[-1][1] is not None:
                self.outages.append((time.monotonic(), None))
        if self.on_event is not None:
            self.on_event("mqtt_disconnected", f"{self.target}: {reason_code}; reconnecting, frames go on "
                          f"(up to {self.max_queued} messages queued)")

    def _on_publish(self, _client, _userdata, _mid, _reason_code=None, _properties=None) -> None:
        with self._lock:
            self.acked += 1

    def _on_message(self, _client, _userdata, msg) -> None:
        if msg.topic == f"{self.discovery_prefix}/status" and msg.payload == b"online":
            self._announce()  # Home Assistant restarted: it wants the discovery messages again

    # -- publishing -----------------------------------------------------------------------------
    def _publish(self, kind: str, topic: str, payload: bytes | str, retain: bool = False) -> bool:
        mqtt = require("paho.mqtt.client", "mqtt", "--mqtt", "paho-mqtt")
        info = self._client.publish(topic, payload, qos=self.qos, retain=retain)
        ok = info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.qos > 0)
        with self._lock:
            book = self.sent if ok else self.dropped
            book[kind] = book.get(kind, 0) + 1
        return ok

    def _announce(self) -> None:
        """Availability, discovery for every label seen, and the current counts (all retained)."""
        self._publish("status", self.status_topic, "online", retain=True)
        with self._lock:
            labels, counts = dict(self._labels), dict(self._counts)
        for label, s in labels.items():
            for component, cfg in self.discovery(label, s).items():
                self._publish("discovery", f"{self.discovery_prefix}/{component}/{self.node}/{cfg['object_id']}/config",
                              json.dumps(cfg), retain=True)
            self._publish("count", f"{self.target.prefix}/{s}/count", str(counts.get(label, 0)), retain=True)

    def discovery(self, label: str, s: str) -> dict[str, dict[str, Any]]:
        """Home Assistant discovery configs for one label: component -> payload."""
        from importlib import metadata

        try:
            version = metadata.version("edgerun")
        except metadata.PackageNotFoundError:
            version = "unknown"
        p = self.target.prefix
        common = {"availability_topic": self.status_topic, "payload_available": "online",
                  "payload_not_available": "offline", "qos": self.qos,
                  "device": {"identifiers": [self.node], "name": f"edgerun {p}", "manufacturer": "edgerun",
                             "model": self.model or "edgerun stream", "sw_version": version},
                  "origin": {"name": "edgerun", "sw_version": version}}
        count = f"{p}/{s}/count"
        return {
            "sensor": {"name": f"{label} count", "object_id": f"{s}_count", "unique_id": f"{self.node}_{s}_count",
                       "state_topic": count, "state_class": "measurement", "unit_of_measurement": "objects",
                       "icon": "mdi:counter", **common},
            "binary_sensor": {"name": f"{label} occupancy", "object_id": f"{s}_occupancy",
                              "unique_id": f"{self.node}_{s}_occupancy", "state_topic": count,
                              "value_template": "{{ 'ON' if value | int > 0 else 'OFF' }}",
                              "payload_on": "ON", "payload_off": "OFF", "device_class": "occupancy", **common},
            "camera": {"name": f"{label} snapshot", "object_id": f"{s}_snapshot",
                       "unique_id": f"{self.node}_{s}_snapshot", "topic": f"{p}/{s}/snapshot", **common},
        }

    def write(self, r) -> int:
        """Publish the events of one result (in frame order); returns how many events."""
        events = self.events.feed(r)
        for e in events:
            try:
                self._send(e, r)
            except Exception as exc:  # noqa: BLE001 - a failed message never stops the stream
                with self._lock:
                    self.dropped["error"] = self.dropped.get("error", 0) + 1
                if self.on_event is not None:
                    self.on_event("mqtt_error", f"{e['type']} event of track {e['track_id']}: "
                                  f"{type(exc).__name__}: {exc}")
        return len(events)

    def use_model(self, names: tuple[str, ...], model: str = "", track_buffer: int | None = None) -> None:
        """Class names (labels), the model's name for the device, the tracker's ``track_buffer``."""
        self.events.names, self.model = tuple(names), model or self.model
        if track_buffer is not None:
            self.events.track_buffer = int(track_buffer)

    def _send(self, e: dict[str, Any], r=None) -> None:
        label = e["label"]
        s = self._labels.get(label)
        if s is None:
            s = slug(label)
            with self._lock:
                self._labels[label] = s
            for component, cfg in self.discovery(label, s).items():
                self._publish("discovery", f"{self.discovery_prefix}/{component}/{self.node}/{cfg['object_id']}/config",
                              json.dumps(cfg), retain=True)
        p = self.target.prefix
        e = {**e, "seq": self._seq, "source": getattr(r, "source", "") if r is not None else "", "time": time.time()}
        self._seq += 1
        snap = e["type"] == "new" and self.snapshots and r is not None and self._snapshot_ok(r)
        if snap:
            e["snapshot_topic"] = f"{p}/{s}/snapshot"
        self._publish(e["type"], f"{p}/events", json.dumps(e))
        if snap:
            self._publish("snapshot", e["snapshot_topic"], self._jpeg(r, e), retain=True)
        if e["type"] in ("new", "end"):
            with self._lock:
                n = self._counts[label] = self._counts.get(label, 0) + (1 if e["type"] == "new" else -1)
            self._publish("count", f"{p}/{s}/count", str(n), retain=True)

    @staticmethod
    def _snapshot_ok(r) -> bool:
        im = getattr(r, "image", None)
        return im is not None and im.ndim == 3 and im.shape[2] == 3 and getattr(r, "pixel_format", "bgr") == "bgr"

    def _jpeg(self, r, e: dict[str, Any]) -> bytes:
        import cv2

        from edgerun.kernels.draw import draw_boxes

        img = r.image.copy()
        draw_boxes(img, np.array([e["box"]], np.float32), np.array([e["class_id"]], np.int64),
                   np.array([e["score"]], np.float32), names=self.events.names)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return buf.tobytes() if ok else b""

    # -- end ------------------------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> dict[str, Any]:
        """End the open tracks, say ``offline``, wait up to ``timeout`` s for acknowledgements, stop."""
        if self._client is None:
            return self.stats()
        for e in self.events.finish():
            self._send(e)
        self._publish("status", self.status_topic, "offline", retain=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.unacked() > 0:
            time.sleep(0.02)
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None
        return self.stats()

    def unacked(self) -> int:
        with self._lock:
            return sum(self.sent.values()) - self.acked

    def stats(self) -> dict[str, Any]:
        """Messages sent/dropped per kind, acknowledgements, reconnects and outages (seconds)."""
        with self._lock:
            outages = [round((b if b is not None else time.monotonic()) - a, 3) for a, b in self.outages]
            return {"sent": dict(self.sent), "dropped": dict(self.dropped), "acked": self.acked,
                    "unacked": sum(self.sent.values()) - self.acked, "events": self._seq,
                    "reconnects": max(0, self.connects - 1), "outages_s": outages}

    def summary(self) -> str:
        """One line for the CLI's stderr."""
        s = self.stats()
        kinds = ", ".join(f"{s['sent'].get(k, 0)} {k}" for k in (*EVENT_KINDS, "snapshot", "count", "discovery"))
        dropped = sum(s["dropped"].values())
        return (f"mqtt {self.target}: {sum(s['sent'].values())} message(s) ({kinds}), {dropped} dropped, "
                f"{s['unacked'] if self.qos else 0} unacknowledged, {s['reconnects']} reconnect(s)"
                + (f" (outages {', '.join(f'{o:.1f}' for o in s['outages_s'])} s)" if s["outages_s"] else ""))
