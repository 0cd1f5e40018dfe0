"""FaceDetector (YuNet) vs cv2.FaceDetectorYN on the same file (native resolution, the default, and
the fixed 640x640 input), symbolic-H/W detection on every shared model, input_size validation, and
SemanticSegmenter (DeepLabV3) vs a plain cv2 + numpy reference."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared_file
from helpers import iou_matrix

from edgerun.kernels.errors import EdgerunValueError
from edgerun.runtime import open_model
from edgerun.runtime.graph import symbolic_hw_problem
from edgerun.runtime.session import Session
from edgerun.runtime.tasks.detector import Detector
from edgerun.runtime.tasks.face import FaceDetector
from edgerun.runtime.tasks.semantic import SemanticSegmenter

YUNET = ("models", "face_detection_yunet_2023mar.onnx")
DEEPLAB = ("models", "deeplabv3_mnv2_pascalvoc_257.onnx")


def _frames():
    names = ("astronaut.png", "zidane.jpg", "bus.jpg", "chelsea.png", "coffee.png", "squirrel_cls.jpg")
    out = {n: cv2.imread(str(shared_file("images", n))) for n in names}
    cap = cv2.VideoCapture(str(shared_file("video", "vtest.avi")))
    for i in range(201):
        ok, img = cap.read()
        assert ok
        if i in (0, 100, 200):
            out[f"vtest#{i}"] = img
    return out


def _peer(path, img, geo, thr, nms):
    """cv2.FaceDetectorYN on the same (resized, or native-size) image; it pads bottom/right with zeros
    to a multiple of 32, like edgerun."""
    small = cv2.resize(img, (geo.new_w, geo.new_h), interpolation=cv2.INTER_LINEAR)
    yn = cv2.FaceDetectorYN.create(path, "", (geo.new_w, geo.new_h), thr, nms, 5000)
    _, faces = yn.detect(small)
    faces = np.zeros((0, 15), np.float32) if faces is None else faces
    box = faces[:, :4].copy()
    box[:, 2:] += box[:, :2]
    box, lms = box / geo.scale_x, faces[:, 4:14].reshape(-1, 5, 2) / geo.scale_x
    h, w = img.shape[:2]  # edgerun clips boxes and landmarks to the image (as Ultralytics does); OpenCV does not
    return np.clip(box, 0, [w, h, w, h]), np.clip(lms, 0, [w, h]), faces[:, 14]


@pytest.mark.parametrize("thr", [0.9, 0.3])
@pytest.mark.parametrize("native", [True, False])
def test_faces_match_opencv(thr, native):
    """Same count, IoU >= 0.9 (measured 1.0), landmarks within 0.01 px, scores within 1e-3, on the six
    photos and three vtest frames. native: each frame at its own size, as ``FaceDetectorYN`` after
    ``setInputSize(w, h)``; else resized into the graph's 640x640 as before."""
    path = str(shared_file(*YUNET))
    fd = FaceDetector.from_path(path, score_threshold=thr, native=native)
    assert fd.native is native
    found = 0
    for name, img in _frames().items():
        d = fd.detect(img)
        box, lms, scores = _peer(path, img, fd.plan(*img.shape[:2]), thr, 0.3)
        assert len(d) == len(box), name
        found += len(d)
        if len(d):
            iou = iou_matrix(d.xyxy, box)
            j = iou.argmax(1)
            assert iou.max(1).min() >= 0.9 and len(set(j.tolist())) == len(j), name
            np.testing.assert_allclose(d.data["landmarks"], lms[j], atol=0.01)
            np.testing.assert_allclose(d.confidence, scores[j], atol=1e-3)
    assert found >= (3 if thr == 0.9 else 7)


def test_face_astronaut_and_open_model():
    fd = open_model(str(shared_file(*YUNET)))
    assert isinstance(fd, FaceDetector) and fd.spec.names == ("face",)
    d = fd.detect(cv2.imread(str(shared_file("images", "astronaut.png"))))
    assert len(d) == 1 and iou_matrix(d.xyxy, [[179, 63, 270, 174]])[0, 0] > 0.8
    assert d.data["landmarks"].shape == (1, 5, 2) and d.class_id.tolist() == [0]


def test_native_resolution_geometry_and_pixel_cap():
    fd = open_model(str(shared_file(*YUNET)))
    assert fd.native and fd.spec.dynamic_hw and fd.session.inputs[0].shape == (1, 3, None, None)
    geo = fd.plan(1080, 810)
    assert (geo.dst_h, geo.dst_w, geo.new_h, geo.new_w, geo.scale_x) == (1088, 832, 1080, 810, 1.0)
    img = cv2.imread(str(shared_file("images", "astronaut.png")))
    capped = FaceDetector.from_path(str(shared_file(*YUNET)), max_pixels=256 * 256)
    g = capped.plan(*img.shape[:2])
    assert (g.new_h, g.new_w, g.dst_h, g.dst_w) == (256, 256, 256, 256)
    d, full = capped.detect(img), fd.detect(img)
    assert len(d) == 1 and iou_matrix(d.xyxy, full.xyxy)[0, 0] > 0.8
    gray = fd.detect(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), pixel_format="gray")  # the letterbox path
    assert len(gray) == 1 and iou_matrix(gray.xyxy, full.xyxy)[0, 0] > 0.8


def test_symbolic_hw_detection_on_the_shared_models():
    """YuNet (and YOLOX nano, raw grid outputs) are fully convolutional; YOLOv8/v5/11 bake the size into
    their head (DFL Reshape / anchor grids), DeepLabV3 into a fixed global-pool window."""
    models = shared_file("models")
    assert symbolic_hw_problem(str(models / "face_detection_yunet_2023mar.onnx")) is None
    assert symbolic_hw_problem(str(models / "yolox_nano_416.onnx")) is None
    assert "dfl/Reshape" in symbolic_hw_problem(str(models / "yolov8n_640_fp32dq.onnx"))
    assert "constant target shape" in symbolic_hw_problem(str(models / "yolov5n_640_fp16.onnx"))
    assert "AveragePool" in symbolic_hw_problem(str(models / "deeplabv3_mnv2_pascalvoc_257.onnx"))
    sess = Session(str(models / "face_detection_yunet_2023mar.onnx")).with_symbolic_hw()
    for h, w in ((576, 768), (224, 352)):
        outs = sess.run(np.zeros((1, 3, h, w), np.float32))
        assert outs[0].shape == (1, h * w // 64, 1) and outs[11].shape == (1, h * w // 1024, 10)


def test_input_size_override_is_checked_when_the_model_opens():
    models = shared_file("models")
    with pytest.raises(EdgerunValueError, match=r"fixed to 640x640 \(HxW\) and cannot run at 480x640 "
                                                r"\(Reshape '/model.22/dfl/Reshape'"):
        open_model(str(models / "yolov8n_640_fp32dq.onnx"), input_size=(480, 640))
    with pytest.raises(EdgerunValueError, match="fixed to 640x640"):
        Detector.from_path(str(models / "yolov8n_640_fp32dq.onnx"), input_size=320)
    fd = FaceDetector.from_path(str(models / "face_detection_yunet_2023mar.onnx"), input_size=(320, 320))
    assert not fd.native and fd.plan(512, 512).dst_h == 320  # runs at the size asked for
    img = cv2.imread(str(shared_file("images", "astronaut.png")))
    assert len(fd.detect(img)) == 1


def test_task_override_keeps_the_model_preprocessing():
    """``open_model(yunet, task="face")`` (what ``--task face`` calls) feeds YuNet as OpenCV does
    (BGR 0..255 at the top-left); before, the override dropped those conventions and found no face."""
    path = str(shared_file(*YUNET))
    img = cv2.imread(str(shared_file("images", "astronaut.png")))
    auto, forced = open_model(path), open_model(path, task="face")
    for f in ("channel_order", "scale", "pad_position", "pad_value", "head", "input_size"):
        assert getattr(forced.spec, f) == getattr(auto.spec, f), f
    a, b = auto.detect(img), forced.detect(img)
    assert len(b) == 1 and abs(float(b.confidence[0]) - 0.94) < 0.01
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    semantic = open_model(str(shared_file(*DEEPLAB)), task="semantic")
    assert semantic.spec.resize == "stretch" and semantic.spec.scale == 1 / 127.5


def _deeplab_reference(session, bgr):
    x = cv2.resize(bgr, (257, 257), interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float32)
    logits = session.run(None, {"sub_7": (x / 127.5 - 1.0)[None].astype(np.float32)})[0][0]
    labels = logits.argmax(-1).astype(np.uint8)
    return cv2.resize(labels, bgr.shape[1::-1], interpolation=cv2.INTER_NEAREST_EXACT)


@pytest.mark.parametrize("name", ["chelsea.png", "bus.jpg"])
def test_semantic_matches_reference(name):
    seg = SemanticSegmenter.from_path(str(shared_file(*DEEPLAB)))
    img = cv2.imread(str(shared_file("images", name)))
    res = seg.segment(img)
    ref = _deeplab_reference(seg.session._sess, img)
    assert res.label_map.shape == img.shape[:2] and res.label_map.dtype == np.uint8
    assert (res.label_map == ref).mean() >= 0.999
    if name == "chelsea.png":  # MANIFEST: cat 74% of pixels
        assert abs((res.label_map == 8).mean() - 0.74) < 0.02
        assert seg.spec.names[8] == "cat" and "names" in seg.spec.guessed


def test_native_faces_in_a_stream_with_per_core_workers():
    """every_frame mode opens one single-thread session per worker: they must be symbolic too."""
    from edgerun.runtime import stream

    fd = open_model(str(shared_file(*YUNET)), score_threshold=0.3)
    frames = [img for k, img in _frames().items() if k.startswith("vtest")]
    got = [r for r in stream(fd, str(shared_file("video", "vtest.avi")), mode="every_frame", workers=2,
                             threads=1, max_frames=201)]
    assert len(got) == 201 and all(getattr(r, "error", None) is None for r in got)
    for r, img in zip((got[0], got[100], got[200]), frames):
        np.testing.assert_allclose(r.detections.xyxy, fd.detect(img).xyxy, atol=1e-3)
