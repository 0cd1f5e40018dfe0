"""Which nodes an int8 export keeps float, chosen by measurement (``edgerun export --int8 --float-nodes search``).

The fixed rule (``quant.stem_nodes`` + ``head_tail_nodes`` + ``head_output_layers``) is one answer; the
search measures the alternatives on this CPU and this model:

1. **groups** of candidate float nodes: the decode tail, the stem block, and the head's last convs split
   by output width (box-regression convs vs class convs: they fail the gate for different reasons);
2. **forward, for accuracy**: start from all-int8; while the gate fails, add the group whose addition
   gives the highest box F1 (ties: group order) and stop as soon as the gate passes;
3. **backward, for speed**: from that passing set, try dropping each group again (a group added early may
   be unneeded once a later one is float); every passing set is kept;
4. **timing**: every passing candidate runs interleaved (alternating order, ``rounds`` blocks of
   ``runs`` calls, best block median); the fastest wins, and a candidate within ``tie`` (2%) of it with
   fewer float nodes wins the tie (timing noise must not buy float nodes).

At most ``max_trials`` quantizations (each a full calibration, ~10 s for yolov8n 640 on 2 cores).
Deterministic: calibration and held-out images come from ``finish.split_calibration``'s seeded split, group
order is fixed, ties break by order. The result names the float nodes, each trial's F1 and every timing.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import quant

__all__ = ["float_groups", "search_float_nodes", "Trial", "QDQ_DEFAULT"]

QDQ_DEFAULT = {"per_channel": True, "activation": "u8", "reduce_range": False}


@dataclass
class Trial:
    groups: tuple[str, ...]
    nodes: int
    f1: float
    passed: bool
    ms: float | None = None
    block_ms: list = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"groups": list(self.groups), "float_nodes": self.nodes, "f1": round(self.f1, 4),
                "passed": self.passed, "ms": self.ms, "block_ms": self.block_ms}


def float_groups(model) -> dict[str, list[str]]:
    """Candidate float-node groups, in a fixed order: tail, stem, then head output convs by width."""
    tail = quant.head_tail_nodes(model)
    groups: dict[str, list[str]] = {"decode tail": tail, "stem": quant.stem_nodes(model)}
    init = {t.name: tuple(t.dims) for t in model.graph.initializer}
    by_node = {n.name: n for n in model.graph.node}
    widths: dict[int, list[str]] = {}
    for name in quant.head_output_layers(model, tail):
        dims = init.get(by_node[name].input[1], (0,))
        widths.setdefault(int(dims[0]), []).append(name)
    for w in sorted(widths):
        groups[f"head convs ({w} out)"] = sorted(widths[w])
    return {k: v for k, v in groups.items() if v}


def search_float_nodes(src: str, ref, calib_feed: Callable[[], Any], images: Sequence[tuple[str, np.ndarray]],
                       *, min_f1: float, max_trials: int = 10, rounds: int = 3, runs: int = 10, tie: float = 0.02,
                       threads: int | None = None, qdq: dict[str, Any] | None = None,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The fastest float-node set whose int8 model passes the gate (box F1 vs ``ref`` >= ``min_f1``).

    ``src``: the fp32 ONNX path (already slimmed); ``ref``: its edgerun ``Detector``; ``calib_feed()``:
    a fresh ``quant.ImageFeed``; ``images``: (name, BGR) gate images. Returns ``{"float_nodes": [...],
    "groups": [...], "trials": [...], "chosen": Trial dict, "passed": bool}``; when no set within
    ``max_trials`` passes, ``passed`` is False and the set with the best F1 is returned."""
    import onnx

    from edgerun.runtime.tasks.detector import Detector

    from .verify import compare_detectors

    groups = float_groups(onnx.load(src))
    names = list(groups)
    trials: dict[tuple[str, ...], Trial] = {}
    files: dict[tuple[str, ...], str] = {}
    say = log or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="edgerun-int8-search-") as tmp:

        def trial(chosen: tuple[str, ...]) -> Trial | None:
            key = tuple(g for g in names if g in chosen)
            if key in trials:
                return trials[key]
            if len(trials) >= max_trials:
                return None
            out = os.path.join(tmp, f"t{len(trials)}.onnx")
            nodes = [n for g in key for n in groups[g]]
            quant.to_int8(src, out, calib_feed(), nodes, **(qdq or {}))
            det = Detector.from_path(out, threads=threads, **_overrides(ref))
            f1 = compare_detectors(ref, det, images).f1
            det.close()
            trials[key], files[key] = Trial(key, len(nodes), f1, f1 >= min_f1), out
            say(f"int8 search: float {list(key) or 'nothing'} ({len(nodes)} nodes): F1 {f1:.3f} "
                f"{'pass' if f1 >= min_f1 else 'fail'}")
            return trials[key]

        current: tuple[str, ...] = ()
        t = trial(current)
        while t is not None and not t.passed and len(current) < len(names):
            options = [(trial(current + (g,)), g) for g in names if g not in current]
            options = [(o, g) for o, g in options if o is not None]
            if not options:
                break
            best, g = max(options, key=lambda og: (og[0].f1, -names.index(og[1])))
            current, t = current + (g,), best
        if t is not None and t.passed:
            for g in list(current):
                trial(tuple(x for x in current if x != g))
        passing = [k for k, v in trials.items() if v.passed]
        if passing:
            tensor = ref.preprocess(images[0][1])[0].copy() if images else None
            _time(passing, files, trials, ref, tensor, rounds, runs, threads)
            fastest = min(trials[k].ms for k in passing)
            near = [k for k in passing if trials[k].ms <= fastest * (1 + tie)]
            chosen = min(near, key=lambda k: (trials[k].nodes, trials[k].ms))
        else:
            chosen = max(trials, key=lambda k: (trials[k].f1, -trials[k].nodes))
    float_nodes = [n for g in chosen for n in groups[g]]
    return {"float_nodes": float_nodes, "groups": {g: len(v) for g, v in groups.items()},
            "chosen": trials[chosen].as_dict(), "passed": trials[chosen].passed,
            "trials": [v.as_dict() for v in trials.values()], "qdq": {**QDQ_DEFAULT, **(qdq or {})}}


def _overrides(ref) -> dict[str, Any]:
    return {"score_threshold": ref.score_threshold, "iou_threshold": ref.iou_threshold}


def _time(keys: list, files: dict, trials: dict, ref, tensor: np.ndarray | None, rounds: int, runs: int,
          threads: int | None) -> None:
    """Best block median ms of each candidate's bare ``Session.run`` on ``tensor`` (the first gate image;
    zeros without one), blocks interleaved."""
    from edgerun.runtime import Session

    if tensor is None:
        tensor = np.zeros(ref.tensor_shape(1, ref.plan(*ref.spec.input_size)), ref.tensor_dtype)
    sessions = {k: Session(files[k], threads=threads if threads else ref.session.threads) for k in keys}
    feed_name = ref.spec.input_name
    for r in range(max(1, rounds)):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            s = sessions[k]
            for _ in range(2):
                s.run({feed_name: tensor})
            samples = []
            for _ in range(max(1, runs)):
                t0 = time.perf_counter()
                s.run({feed_name: tensor})
                samples.append((time.perf_counter() - t0) * 1e3)
            trials[k].block_ms.append(round(float(np.median(samples)), 3))
    for k in keys:
        trials[k].ms = min(trials[k].block_ms)
