"""Typed options (tasks/options.py) and the one open path: every public opener and options type
refuses a misspelled keyword naming the closest valid one; values are checked at creation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.runtime.results import Detections
from edgerun.runtime.tasks.base import Task
from edgerun.runtime.tasks.classifier import Classifier
from edgerun.runtime.tasks.detector import Detector
from edgerun.runtime.tasks.dispatch import TASK_CLASSES, open_model
from edgerun.runtime.tasks.face import FaceDetector
from edgerun.runtime.tasks.options import (ClassifierOptions, DetectorOptions, FaceOptions, ModelOptions,
                                           PoseOptions, SegmenterOptions, SemanticOptions)
from edgerun.runtime.tasks.pose import PoseDetector
from edgerun.runtime.tasks.segmenter import Segmenter
from edgerun.runtime.tasks.semantic import SemanticSegmenter

DEMO = str(Path(__file__).parents[3] / "runtime" / "data" / "demo.onnx")
TYPOS = [("score_treshold", "score_threshold"), ("input_sise", "input_size"), ("thread", "threads"),
         ("chanel_order", "channel_order"), ("top", "top_k"), ("mask", "masks"), ("nativ", "native")]


@pytest.mark.parametrize("cls", [Detector, Segmenter, PoseDetector, FaceDetector, Classifier, SemanticSegmenter])
@pytest.mark.parametrize("typo,closest", TYPOS)
def test_from_path_refuses_a_typo_naming_the_closest(cls, typo, closest):
    # refused before the file is opened, whatever the task: demo.onnx serves every class here
    if closest not in cls.Options.names() + ModelOptions.names():  # another task's name: refused too
        with pytest.raises(TypeError, match=f"{cls.__name__}.from_path got an unexpected keyword '{typo}'"):
            cls.from_path(DEMO, **{typo: 1})
        return
    with pytest.raises(TypeError, match=f"{cls.__name__}.from_path got an unexpected keyword '{typo}'. "
                                        f"Did you mean '{closest}'"):
        cls.from_path(DEMO, **{typo: 1})


def test_from_path_refuses_another_tasks_option_by_its_own_names():
    with pytest.raises(TypeError, match="'top_k'.*Valid names: .*score_threshold"):
        Detector.from_path(DEMO, top_k=3)
    with pytest.raises(TypeError, match="Did you mean 'masks'"):
        Segmenter.from_path(DEMO, mask="none")


@pytest.mark.parametrize("strict", [True, False])
def test_open_model_refuses_a_typo_even_when_not_strict(strict):
    with pytest.raises(TypeError, match="open_model got an unexpected keyword 'iou_treshold'. "
                                        "Did you mean 'iou_threshold'"):
        open_model(DEMO, iou_treshold=0.5, strict=strict)
    with pytest.raises(TypeError, match="Did you mean 'input_size'"):
        open_model(DEMO, input_sise=(320, 320), strict=strict)


def test_open_model_other_tasks_options_raise_or_drop():
    with pytest.raises(EdgerunValueError, match="option 'top_k' does not apply to Detector"):
        open_model(DEMO, top_k=3)
    det = open_model(DEMO, top_k=3, score_threshold=0.4, strict=False)
    assert type(det) is Detector and det.options == DetectorOptions(score_threshold=0.4)


@pytest.mark.parametrize("cls", [DetectorOptions, PoseOptions, SegmenterOptions, FaceOptions,
                                 ClassifierOptions, SemanticOptions, ModelOptions])
def test_every_options_type_refuses_a_typo(cls):
    valid = cls.names()
    name = valid[0] if valid else "top_k"
    typo = name[:-1] + "x" if valid else "top_kk"
    with pytest.raises(TypeError, match=f"{cls.__name__} got an unexpected keyword '{typo}'"
                                        + (f". Did you mean '{name}'" if valid else "")):
        cls(**{typo: 1})


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: DetectorOptions(max_detections=2.7), EdgerunTypeError,
     r"max_detections: expected an int, got float 2.7 \(pass a whole number"),  # refused, not truncated
    (lambda: DetectorOptions(score_threshold="x"), EdgerunTypeError, "score_threshold: expected a number, got str 'x'"),
    (lambda: DetectorOptions(iou_threshold=1.5), EdgerunValueError, r"iou_threshold: expected a finite number in \[0.0, 1.0\], got 1.5"),
    (lambda: DetectorOptions(class_agnostic=1), EdgerunTypeError, "class_agnostic: expected True or False, got int 1"),
    (lambda: DetectorOptions(max_candidates=0), EdgerunValueError, "max_candidates: expected > 0, got 0"),
    (lambda: SegmenterOptions(masks="ful"), EdgerunValueError, r"masks: expected one of \('full', 'proto', 'none'\), got 'ful'"),
    (lambda: FaceOptions(native="yes"), EdgerunTypeError, "native: expected True or False"),
    (lambda: FaceOptions(max_pixels=-1), EdgerunValueError, "max_pixels: expected > 0"),
    (lambda: ClassifierOptions(top_k=0), EdgerunValueError, "top_k: expected > 0, got 0"),
    (lambda: ModelOptions(threads=1.5), EdgerunTypeError, "threads: expected an int, got float 1.5"),
    (lambda: ModelOptions(spin=3), EdgerunTypeError, "spin: expected 'auto', 'off', 'on', 'stop', True or False"),
    (lambda: DetectorOptions(0.3), TypeError, "positional"),  # keyword-only: no silent reordering
])
def test_options_validation_messages(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_options_are_frozen_and_typed_opening_matches_keywords():
    o = DetectorOptions(score_threshold=0.4)
    with pytest.raises(AttributeError):
        o.score_threshold = 0.1
    a = Detector.open(DEMO, o, ModelOptions(threads=1, input_size=(320, 320)))
    b = Detector.from_path(DEMO, score_threshold=0.4, threads=1, input_size=(320, 320))
    assert a.options == b.options and a.spec == b.spec and a.session.threads == b.session.threads == 1
    with pytest.raises(EdgerunTypeError, match="options: expected DetectorOptions, got ClassifierOptions"):
        Detector.open(DEMO, ClassifierOptions())
    with pytest.raises(EdgerunTypeError, match="model: expected ModelOptions, got dict"):
        Detector.open(DEMO, None, {"threads": 1})
    assert type(Task.open(DEMO)) is Detector  # on Task itself: the class the spec's task names


def test_each_task_has_its_own_verb():
    for cls in (Detector, Segmenter, PoseDetector, FaceDetector):
        assert hasattr(cls, "detect") and hasattr(cls, "run")
    assert hasattr(Classifier, "classify") and not hasattr(Classifier, "detect")
    assert hasattr(Segmenter, "segment") and hasattr(SemanticSegmenter, "segment")
    assert not hasattr(SemanticSegmenter, "detect")
    for task, cls in TASK_CLASSES.items():  # the registry is the classes' own TASK and Options
        assert cls.TASK == task and "Options" in cls.Options.__name__


def test_open_model_opens_real_tasks_with_their_options():
    cls_path = str(shared_file("models", "mobilenetv2_224_imagenet_int8.onnx"))
    clf = open_model(cls_path, top_k=3, threads=1)
    assert type(clf) is Classifier and clf.options == ClassifierOptions(top_k=3)
    assert len(clf.classify(np.zeros((64, 64, 3), np.uint8))) == 3
    face = str(shared_file("models", "face_detection_yunet_2023mar.onnx"))
    assert open_model(face).native and not open_model(face, input_size=(320, 320)).native
    assert FaceDetector.from_path(face, native=False).options.native is False


# -- Detections: indexing and shape checks --------------------------------------------------------
def _dets(n=4):
    xyxy = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return Detections(xyxy, np.linspace(0.1, 0.9, n).astype(np.float32), np.arange(n, dtype=np.int64),
                      mask=np.zeros((n, 3, 5), bool), tracker_id=np.arange(10, 10 + n),
                      data={"keypoints": np.zeros((n, 17, 2), np.float32)}, timings={"inference": 1.0},
                      image_shape=(3, 5), names=("a", "b", "c", "d"))


@pytest.mark.parametrize("index,want", [(1, [1]), (-1, [3]), (slice(1, 3), [1, 2]), (np.array([3, 0]), [3, 0]),
                                        ([2], [2]), (np.array([True, False, True, False]), [0, 2]),
                                        (np.zeros(4, bool), []), (np.array([], np.int64), [])])
def test_detections_getitem(index, want):
    d = _dets()
    s = d[index]
    assert isinstance(s, Detections) and s.class_id.tolist() == want
    assert s.xyxy.shape == (len(want), 4) and s.mask.shape == (len(want), 3, 5)
    assert s.tracker_id.tolist() == [10 + i for i in want] and s.data["keypoints"].shape == (len(want), 17, 2)
    assert s.names == d.names and s.image_shape == d.image_shape and s.timings == d.timings
    assert len(d[d.confidence > 0.5]) == 2


@pytest.mark.parametrize("index,exc,msg", [(4, IndexError, "index 4 out of range for 4"),
                                           (np.array([True, False]), EdgerunValueError, r"boolean index: expected shape \(4,\)"),
                                           (np.array([0.5]), EdgerunTypeError, "float64 array")])
def test_detections_getitem_refuses(index, exc, msg):
    with pytest.raises(exc, match=msg):
        _dets()[index]


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(xyxy=np.zeros((2, 4))), EdgerunValueError, r"xyxy: expected an \(N, 4\) float32 array, got \(2, 4\) float64"),
    (dict(xyxy=np.zeros((2, 5), np.float32)), EdgerunValueError, r"xyxy: expected an \(N, 4\)"),
    (dict(xyxy=[[0, 0, 1, 1]]), EdgerunTypeError, "xyxy: expected a numpy.ndarray, got list"),
    (dict(confidence=np.zeros(3, np.float32)), EdgerunValueError, r"confidence: expected shape \(2,\) for 2 boxes, got \(3,\)"),
    (dict(class_id=np.zeros((2, 1), np.int64)), EdgerunValueError, r"class_id: expected shape \(2,\)"),
    (dict(mask=np.zeros((3, 4, 4), bool)), EdgerunValueError, r"mask: expected \(N=2, H, W\) or None, got \(3, 4, 4\)"),
    (dict(data={"keypoints": np.zeros((1, 17, 2))}), EdgerunValueError, r"data\['keypoints'\]: expected an array of 2 rows"),
])
def test_detections_shape_validation(kw, exc, msg):
    base = dict(xyxy=np.zeros((2, 4), np.float32), confidence=np.zeros(2, np.float32),
                class_id=np.zeros(2, np.int64))
    with pytest.raises(exc, match=msg):
        Detections(**{**base, **kw})
    assert len(Detections(**base)) == 2 and len(Detections.empty()) == 0
