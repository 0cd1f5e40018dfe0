"""Detector on the real shared models: known detections, an independent reference pipeline,
camera pixel formats, batch form and bad input."""
from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from conftest import IMAGES, shared_file
from helpers import match, reference_detect

from edgerun.kernels.errors import EdgerunError
from edgerun.runtime.tasks.detector import Detector
from edgerun.runtime.session import ModelError

PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png", "chelsea.png", "squirrel_cls.jpg"]


@pytest.fixture(scope="module")
def v8():
    return Detector.from_path(str(shared_file("models", "yolov8n_640_fp32dq.onnx")))


def _names(det, d):
    return [det.spec.names[c] for c in d.class_id]


def test_yolov8n_bus_matches_manifest(v8, bus_bgr):
    d = v8.detect(bus_bgr)
    # MANIFEST: person 0.91, 0.90, 0.90, bus 0.83, person 0.37
    assert sorted(_names(v8, d)) == ["bus", "person", "person", "person", "person"]
    np.testing.assert_allclose(sorted(d.confidence, reverse=True), [0.91, 0.90, 0.90, 0.83, 0.37], atol=0.015)
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (5, 4)
    assert set(d.timings) == {"preprocess", "inference", "postprocess"}


@pytest.mark.parametrize("model,size", [("yolov8n_640_fp32dq", 640), ("yolov8n_640_int8dyn", 640),
                                        ("yolov8n_320_int8dyn", 320)])
def test_detector_equals_independent_reference_on_every_photo(model, size):
    """Same boxes (IoU >= 0.99), classes and confidences within 5e-3 as a plain cv2+numpy pipeline.
    5e-3: edgerun resamples in float32 while cv2.resize rounds to uint8 with 11-bit fixed-point
    weights, so input pixels differ by up to ~1/255; through the network that moves scores by a few
    1e-3 at most (measured max ~2e-3)."""
    path = str(shared_file("models", f"{model}.onnx"))
    det = Detector.from_path(path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for name in PHOTOS:
        img = cv2.imread(str(IMAGES / name))
        d = det.detect(img)
        rx, rc, rk = reference_detect(sess, img, (size, size))
        pairs, up, ur = match(d.xyxy, d.confidence, d.class_id, rx, rc, rk, 0.99)
        near = lambda c: abs(c - 0.25) < 5e-3  # noqa: E731 - borderline scores may flip
        assert all(near(d.confidence[i]) for i in up), f"{model} {name}: extra {d.confidence[up]}"
        assert all(near(rc[j]) for j in ur), f"{model} {name}: missing {rc[ur]}"
        for i, j, _ in pairs:
            assert abs(d.confidence[i] - rc[j]) <= 5e-3, (model, name, d.confidence[i], rc[j])


def test_yolov5_fp16_and_yolox_find_the_bus_scene(bus_bgr, v8):
    ref = v8.detect(bus_bgr)
    for model in ("yolov5n_640_fp16", "yolox_nano_416"):
        det = Detector.from_path(str(shared_file("models", f"{model}.onnx")))
        d = det.detect(bus_bgr)
        names = _names(det, d)
        assert names.count("person") >= 3 and "bus" in names, (model, names, d.confidence)
        # every strong yolov8n object is found by the other model too (IoU >= 0.7, same class)
        strong = ref.confidence > 0.5
        pairs, _, ur = match(d.xyxy, d.confidence, d.class_id, ref.xyxy[strong],
                             ref.confidence[strong], ref.class_id[strong], 0.7)
        assert not ur, (model, ur)


def test_yolox_spec_inferred_from_graph():
    det = Detector.from_path(str(shared_file("models", "yolox_nano_416.onnx")))
    s = det.spec
    assert (s.head, s.channel_order, s.scale, s.pad_position) == ("yolox", "bgr", 1.0, "top_left")
    assert {"head", "channel_order", "pad_position"} <= set(s.guessed)


@pytest.mark.parametrize("fmt,code", [("nv12", cv2.COLOR_BGR2YUV_I420), ("i420", cv2.COLOR_BGR2YUV_I420),
                                      ("rgb", None), ("gray", None), ("yuyv", None)])
def test_camera_pixel_formats_give_the_same_objects(v8, bus_bgr, fmt, code):
    img = bus_bgr
    if fmt == "rgb":
        frame = np.ascontiguousarray(img[..., ::-1])
        ref_img = img
    elif fmt == "gray":
        frame = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        ref_img = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif fmt == "yuyv":
        yuv = cv2.cvtColor(img, cv2.COLOR_BGR2YUV)
        frame = np.empty(img.shape[:2] + (2,), np.uint8)
        frame[..., 0] = yuv[..., 0]
        frame[:, 0::2, 1] = yuv[:, 0::2, 1]
        frame[:, 1::2, 1] = yuv[:, 0::2, 2]
        ref_img = cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_YUY2)
    else:
        i420 = cv2.cvtColor(img, code)
        h, w = img.shape[:2]
        if fmt == "nv12":
            u = i420[h:h + h // 4].reshape(h // 2, w // 2)
            v = i420[h + h // 4:].reshape(h // 2, w // 2)
            frame = i420.copy()
            frame[h:] = np.stack([u, v], -1).reshape(h // 2, w)
            ref_img = cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_NV12)
        else:
            frame = i420
            ref_img = cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420)
    d = v8.detect(frame, pixel_format=fmt)
    r = v8.detect(ref_img)
    pairs, up, ur = match(d.xyxy, d.confidence, d.class_id, r.xyxy, r.confidence, r.class_id, 0.95)
    assert len(pairs) >= len(r) - 1 and len(up) <= 1, (fmt, d.confidence, r.confidence)


def test_batch_form_equals_single_calls(v8, bus_bgr, zidane_bgr):
    dets = v8.detect_batch([bus_bgr, zidane_bgr, bus_bgr[::2, ::2]])
    for img, d in zip([bus_bgr, zidane_bgr, bus_bgr[::2, ::2]], dets):
        s = v8.detect(img)
        np.testing.assert_array_equal(d.class_id, s.class_id)
        np.testing.assert_allclose(d.xyxy, s.xyxy, atol=1e-3)


def test_non_contiguous_and_tiny_images(v8, bus_bgr):
    view = bus_bgr[::-1, ::-1]  # strided, negative strides
    d = v8.detect(view)
    r = v8.detect(np.ascontiguousarray(view))
    np.testing.assert_allclose(d.xyxy, r.xyxy, atol=1e-4)
    for shape in [(1, 1, 3), (1, 500, 3), (3, 2, 3)]:
        out = v8.detect(np.full(shape, 127, np.uint8))
        assert out.xyxy.shape[1] == 4 and np.isfinite(out.xyxy).all()
        assert (out.xyxy[:, [0, 2]] <= shape[1]).all() and (out.xyxy[:, [1, 3]] <= shape[0]).all()


@pytest.mark.parametrize("image,err", [
    (np.zeros((10, 10, 3), np.float32), TypeError),
    (np.zeros((10, 10, 4), np.uint8), ValueError),
    (np.zeros((0, 10, 3), np.uint8), ValueError),
    ("bus.jpg", TypeError),
])
def test_bad_images_raise_clear_errors(v8, image, err):
    with pytest.raises(err) as info:
        v8.detect(image)
    assert isinstance(info.value, EdgerunError)


def test_missing_corrupt_and_unknown_models(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Detector.from_path(str(tmp_path / "nope.onnx"))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        Detector.from_path(str(empty))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match="cannot load"):
        Detector.from_path(str(junk))
    # a valid model whose output matches no detection head
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    g = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / "identity.onnx"
    onnx.save(m, str(p))
    with pytest.raises(ModelError, match=r"\(1, 3, 64, 64\).*match no known.*head="):
        Detector.from_path(str(p))


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    del w.external_data[:]
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    w.ClearField("raw_data")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])
    g = helper.make_graph([helper.make_node("Mul", ["images", "w"], ["out"])], "g", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "m").mkdir()
    p = tmp_path / "m" / "hostile.onnx"
    p.write_bytes(m.SerializeToString())
    (tmp_path / "secret.bin").write_bytes(b"\0" * 12)
    with pytest.raises(ModelError, match="outside the model's folder"):
        Detector.from_path(str(p))



def _dynamic_replay(raw: np.ndarray, path) -> str:
    """An ONNX graph with dynamic H/W input and fully symbolic output dims (batch, rows, anchors) that
    returns ``raw`` (a real model's output) for any input: ORT cannot infer any output dim of it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", "rows", "anchors"])
    inits = [numpy_helper.from_array(raw, "raw"), numpy_helper.from_array(np.zeros(3, np.int64), "zero"),
             numpy_helper.from_array(np.array(raw.shape, np.int64), "full")]
    nodes = [helper.make_node("Shape", ["images"], ["s"], start=1), helper.make_node("Mul", ["s", "zero"], ["z"]),
             helper.make_node("Add", ["z", "full"], ["ends"]), helper.make_node("Slice", ["raw", "zero", "ends"],
                                                                                ["output0"])]
    g = helper.make_graph(nodes, "replay", [x], [y], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_symbolic_output_dims_load_and_decode_the_same(tmp_path, v8, bus_bgr):
    """Dynamic-H/W exports may leave every output axis symbolic (None, None, None): the load-time check
    accepts that, decode checks the real shape on each run, and the boxes are those of the real model."""
    tensor, _ = v8.preprocess(bus_bgr)
    path = _dynamic_replay(v8.infer(tensor)[0].copy(), tmp_path / "replay.onnx")
    det = Detector.from_path(path, num_classes=80, input_size=(640, 640), rect=False)
    assert det.session.outputs[0].shape == (None, None, None) and det.spec.dynamic_hw
    a, b = v8.detect(bus_bgr), det.detect(bus_bgr)
    assert len(a) >= 4
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    wrong = Detector.from_path(path, num_classes=90, input_size=(640, 640), rect=False)
    with pytest.raises(EdgerunError, match="num_classes: expected <= 80"):
        wrong.detect(bus_bgr)


def test_spec_from_rows_when_anchors_are_symbolic():
    from edgerun.runtime.session import TensorInfo
    from edgerun.runtime.spec import resolve_spec

    inp = [TensorInfo("images", (None, 3, None, None), np.float32)]
    det = resolve_spec({}, inp, [TensorInfo("output0", (None, 6, None), np.float32)])
    assert (det.head, det.num_classes, det.dynamic_hw, det.task) == ("yolov8", 2, True, "detect")
    pose = resolve_spec({"kpt_shape": "[17, 3]", "task": "pose"}, inp, [TensorInfo("o", (None, 56, None), np.float32)])
    assert (pose.task, pose.num_classes) == ("pose", 1)
    seg = resolve_spec({}, inp, [TensorInfo("o", (None, 116, None), np.float32),
                                 TensorInfo("p", (None, 32, None, None), np.float32)])
    assert (seg.task, seg.num_classes) == ("segment", 80)
