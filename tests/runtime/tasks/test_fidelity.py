"""Fidelity with the training framework: Detector vs Ultralytics' own predictor on the same ONNX.

../shared/refs/ultralytics_detect.json holds Ultralytics 8.4.190 predictions (conf 0.25, IoU 0.7,
max_det 300, class-aware NMS). Every box must match at IoU >= 0.95 with the same class and a
confidence within 0.01; nothing missing or extra. The one allowance: a box whose confidence is within
0.01 of the 0.25 threshold may be on either side of it (both pipelines use float32 arithmetic that
differs in the last bits; such a box is legitimately borderline), and is reported.

IoU >= 0.95 alone let a wrong padding through (a 1-tensor-pixel pad error moves a box by 0.5-0.94 source
px, IoU still > 0.95), so every matched corner must also be within COORD_TOL source px of Ultralytics'.
Both run the same ONNX file in ONNX Runtime: measured max |difference| 0.0005 px over the refs below
(float32 map-back); a pad off by one tensor px or a single gain instead of Ultralytics 8.4's per-axis
gains is >= 0.4 px on the non-square images of ../shared/images-odd (ultralytics_detect_odd.json).

The refs' video frames are what opencv-python(-headless) 5.1.0.95's FFmpeg decodes from vtest.avi
(MS-MPEG4v3); 4.8.0.76's decoder (the oldest lane) gives other pixels from frame 80 on, so a video
frame whose decoded SHA-256 differs from REF_FRAME_SHA256 is left out (and counted in the printout):
what the test compares is the pipeline on the same pixels, and the photos are compared on every lane.
"""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
from conftest import SHARED, shared_file
from helpers import match

from edgerun.runtime.tasks.detector import Detector

MODELS = ["yolov8n_640_fp32dq", "yolov8n_640_int8dyn", "yolov8n_320_int8dyn"]
CONF, IOU_MIN, CONF_TOL, COORD_TOL = 0.25, 0.95, 0.01, 0.05
REF_FILES = ("ultralytics_detect.json", "ultralytics_detect_odd.json")
# SHA-256 (first 16 hex) of the frames the refs were predicted on, decoded by OpenCV 5.1.0.95.
REF_FRAME_SHA256 = {
    "video/vtest.avi#0": "6327fa3c189bd3af", "video/vtest.avi#80": "cc57d837da6c30cc",
    "video/vtest.avi#160": "f740649253396ec0", "video/vtest.avi#240": "945c373af5890bd8",
    "video/vtest.avi#320": "12970a69bc3f9e20", "video/vtest.avi#400": "d3660cc2a6998157",
    "video/vtest.avi#480": "2cd87a712776ab8d", "video/vtest.avi#560": "ee100a76c0f036fb",
    "video/vtest.avi#640": "17af6e2c8dcdfa98", "video/vtest.avi#720": "5b60c609af56d8de",
}


def _sha(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()[:16]


def _refs():
    """{model: {key: boxes}} merged over the ref files present ({} when none is)."""
    out: dict = {}
    for name in REF_FILES:
        path = SHARED / "refs" / name
        if path.exists():
            for model, per_key in json.loads(path.read_text()).items():
                out.setdefault(model, {}).update(per_key)
    return out


def _frames(keys):
    """Decode the referenced images and video frames once."""
    out, wanted = {}, {}
    for k in keys:
        if "#" in k:
            f, n = k.split("#")
            wanted.setdefault(f, set()).add(int(n))
        else:
            out[k] = cv2.imread(str(SHARED / k))
    for f, frames in wanted.items():
        cap = cv2.VideoCapture(str(SHARED / f))
        for i in range(max(frames) + 1):
            ok, img = cap.read()
            assert ok, f"cannot read frame {i} of {f}"
            key = f"{f}#{i}"
            if i in frames and _sha(img) == REF_FRAME_SHA256.get(key):  # else: other pixels than the refs'
                out[key] = img
        cap.release()
    return out


@pytest.fixture(scope="module")
def frames():
    refs = _refs()
    if not refs:
        pytest.skip("../shared/refs/ultralytics_detect*.json are absent")
    keys = sorted({k for m in MODELS for k in refs.get(m, {})})
    return _frames(keys)


@pytest.mark.parametrize("model", MODELS)
def test_detector_reproduces_ultralytics_predictions(model, frames):
    refs = _refs()[model]
    det = Detector.from_path(str(shared_file("models", f"{model}.onnx")), score_threshold=CONF,
                             iou_threshold=0.7, max_detections=300)
    total = matched = 0
    worst_iou, worst_dconf, worst_dxy, borderline = 1.0, 0.0, 0.0, []
    other_pixels = [k for k in refs if k not in frames]
    assert all("#" in k for k in other_pixels), other_pixels  # only video frames may decode differently
    for key, boxes in refs.items():
        if key in other_pixels:
            continue
        ref = np.asarray(boxes, np.float64).reshape(-1, 6)
        d = det.detect(frames[key])
        pairs, up, ur = match(d.xyxy, d.confidence, d.class_id, ref[:, :4], ref[:, 4], ref[:, 5], IOU_MIN)
        for i, j, iou in pairs:
            worst_iou = min(worst_iou, iou)
            worst_dconf = max(worst_dconf, abs(float(d.confidence[i]) - ref[j, 4]))
            dxy = float(np.abs(d.xyxy[i] - ref[j, :4]).max())
            assert dxy <= COORD_TOL, f"{model} {key}: box {d.xyxy[i]} vs Ultralytics {ref[j, :4]} ({dxy:.3f} px)"
            worst_dxy = max(worst_dxy, dxy)
        extra = [float(d.confidence[i]) for i in up]
        missing = [float(ref[j, 4]) for j in ur]
        borderline += [(key, c) for c in extra + missing if abs(c - CONF) <= CONF_TOL]
        bad = [c for c in extra + missing if abs(c - CONF) > CONF_TOL]
        assert not bad, f"{model} {key}: extra {extra} / missing {missing} (confidences)"
        total += len(ref)
        matched += len(pairs)
    print(f"{model}: {matched}/{total} matched, worst IoU {worst_iou:.4f}, worst |dconf| "
          f"{worst_dconf:.4f}, worst corner {worst_dxy:.4f} px, borderline {borderline}, "
          f"{len(other_pixels)} video frames left out (this OpenCV decodes them differently)")
    assert worst_dconf <= CONF_TOL
    f1 = 2 * matched / (2 * matched + len(borderline))
    assert f1 >= 0.99, f"F1 {f1:.3f}"


# ------------------------------------------------------------------------------------- masks
SEG_MODEL = "yolov8n-seg_320_fp32dq"
# Per matched object, mask IoU with Ultralytics' own mask (retina_masks=False, mapped with ops.scale_masks).
# Both start from the same ONNX outputs; what may differ is float32 rounding (the prototype dot product is
# a BLAS sgemm in PyTorch, a plain loop here), which can only flip pixels whose logit or blended value sits
# at the threshold. Measured: IoU 1.0 (identical masks) for all 102 objects of the 16 frames. The
# tolerance leaves room for such flips on other CPUs/ORT builds while failing a 1-source-pixel shift
# (IoU ~0.95 on the 20-40 px wide people of vtest); the old crop-then-upsample with padding rounded at
# prototype resolution scored min 0.485, median 0.830 here.
MASK_IOU_MIN = 0.99


def _rle_decode(rle: dict) -> np.ndarray:
    """Ultralytics-ref RLE (row-major runs, alternating False/True, starting with False) -> (H, W) bool."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    assert flat.size == h * w, f"RLE covers {flat.size} pixels, expected {h * w}"
    return flat.reshape(h, w)


def mask_ious(seg, frames_by_key, refs):
    """Per-object mask IoUs of the matched objects, plus (key, extra, missing) box mismatches."""
    ious, mismatches = [], []
    for key, objs in refs.items():
        if key not in frames_by_key:  # a video frame this OpenCV decodes to other pixels than the refs'
            assert "#" in key, key
            continue
        img = frames_by_key[key]
        d = seg.detect(img)
        ref_xyxy = np.array([o["xyxy"] for o in objs], np.float64).reshape(-1, 4)
        ref_conf = np.array([o["conf"] for o in objs], np.float64)
        ref_cls = np.array([o["cls"] for o in objs], np.int64)
        pairs, up, ur = match(d.xyxy, d.confidence, d.class_id, ref_xyxy, ref_conf, ref_cls, IOU_MIN)
        if up or ur:
            mismatches.append((key, [float(d.confidence[i]) for i in up], [float(ref_conf[j]) for j in ur]))
        for i, j, _ in pairs:
            r = _rle_decode(objs[j]["mask"])
            assert r.shape == img.shape[:2]
            m = d.mask[i]
            union = int((m | r).sum())
            ious.append((int((m & r).sum()) / union if union else 1.0, key, j))
    return ious, mismatches


@pytest.fixture(scope="module")
def seg_refs():
    path = SHARED / "refs" / "ultralytics_seg.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    d = json.loads(path.read_text())
    return d["images"]


def test_segmenter_masks_reproduce_ultralytics(seg_refs):
    from edgerun.runtime.tasks.segmenter import Segmenter

    seg = Segmenter.from_path(str(shared_file("models", f"{SEG_MODEL}.onnx")), score_threshold=CONF,
                              iou_threshold=0.7, max_detections=300)
    frames = _frames(list(seg_refs))
    ious, mismatches = mask_ious(seg, frames, seg_refs)
    values = np.array([v for v, _, _ in ious])
    left_out = [k for k in seg_refs if k not in frames]
    print(f"{SEG_MODEL}: {len(values)} objects, mask IoU min {values.min():.4f} median "
          f"{np.median(values):.4f} mean {values.mean():.4f}; box mismatches {mismatches}; "
          f"{len(left_out)} video frames left out (this OpenCV decodes them differently)")
    assert all("#" in k for k in left_out), left_out  # every photo is compared, on every lane
    assert len(values) >= 15  # 18 objects on the oldest lane's frames, 102 on the newest
    bad = [m for m in mismatches if any(abs(c - CONF) > CONF_TOL for c in m[1] + m[2])]
    assert not bad, f"objects extra/missing vs Ultralytics: {bad}"
    worst = min(ious)
    assert worst[0] >= MASK_IOU_MIN, f"mask IoU {worst[0]:.4f} on {worst[1]} object {worst[2]}"
