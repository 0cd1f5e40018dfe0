"""Classifier on the real MobileNetV2 (int8, no metadata) vs an independent cv2 + numpy reference.

Reference: cv2.resize (INTER_LINEAR) of the short side to 256 (torchvision's int truncation of the
long side), centre crop 224 (torchvision's rounding), RGB, /255, ImageNet mean/std, numpy softmax in
float64. Probabilities must agree within 1e-5 (measured: <= 1e-7, the tensors are bit-identical up to
float rounding of the normalisation); top-5 as the MANIFEST lists, exact logit ties by class index.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared_file

from edgerun.runtime import open_model
from edgerun.runtime.tasks.classifier import Classifier

MODEL = ("models", "mobilenetv2_224_imagenet_int8.onnx")
TOP = {"squirrel_cls.jpg": [335], "chelsea.png": [285, 282, 281], "coffee.png": [967],
       "bus.jpg": [575, 654, 734]}  # MANIFEST: fox squirrel; Egyptian/tiger/tabby; espresso; tie then van
ATOL = 1e-5


@pytest.fixture(scope="module")
def clf():
    return Classifier.from_path(str(shared_file(*MODEL)))


def _reference(session, bgr):
    h, w = bgr.shape[:2]
    nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    rgb = img[top:top + 224, left:left + 224, ::-1].astype(np.float32) / 255.0
    x = ((rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).astype(np.float32)
    logits = session.run(None, {"input": x.transpose(2, 0, 1)[None].copy()})[0][0].astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_spec_is_guessed_from_the_graph(clf):
    s = clf.spec
    assert (s.task, s.resize, s.resize_short, s.input_size, s.softmax) == ("classify", "center_crop", 256,
                                                                          (224, 224), True)
    assert s.mean == (0.485, 0.456, 0.406) and s.std == (0.229, 0.224, 0.225)
    assert {"task", "resize", "resize_short", "mean", "std", "softmax"} <= set(s.guessed)


@pytest.mark.parametrize("name", sorted(TOP))
def test_top5_and_probabilities_match_reference(clf, name):
    bgr = cv2.imread(str(shared_file("images", name)))
    res = clf.classify(bgr)
    ref = _reference(clf.session._sess, bgr)
    np.testing.assert_allclose(res.probabilities, ref, atol=ATOL, rtol=0)
    assert res.class_id[:len(TOP[name])].tolist() == TOP[name]
    np.testing.assert_array_equal(res.class_id, np.argsort(-res.probabilities, kind="stable")[:5])
    assert res.class_id.dtype == np.int64 and res.confidence.dtype == np.float32


def test_bus_tie_is_exact(clf):
    res = clf.classify(cv2.imread(str(shared_file("images", "bus.jpg"))))
    assert res.confidence[0] == res.confidence[1] and res.class_id[:2].tolist() == [575, 654]


def test_batch_equals_single_and_records(clf):
    imgs = [cv2.imread(str(shared_file("images", n))) for n in ("chelsea.png", "coffee.png")]
    batch = clf.run_batch(imgs)
    for im, b in zip(imgs, batch):
        np.testing.assert_allclose(b.probabilities, clf.classify(im).probabilities, atol=1e-6)
    rec = batch[1].to_records(("x",) * 1000)
    assert rec[0]["class_id"] == 967 and set(rec[0]) == {"class_id", "class_name", "confidence"}


def test_open_model_picks_classify_and_override():
    path = str(shared_file(*MODEL))
    m = open_model(path, top_k=3, softmax=False)
    assert isinstance(m, Classifier) and m.top_k == 3 and not m.spec.softmax
    res = m.classify(cv2.imread(str(shared_file("images", "coffee.png"))))
    assert len(res) == 3 and res.confidence[0] > 10  # raw logits
