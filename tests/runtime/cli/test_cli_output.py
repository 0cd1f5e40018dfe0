"""What the CLI does with every input it is given, and the names in what it prints: all sources
(shell-expanded globs, ``source=`` lists, any order), the demo only when asked, unique ``--save``
names, per-file ``source`` in streams over folders, class names in results (ImageNet-1k for an
unnamed 1000-class classifier), ``to_supervision()``, ``--version``/``--help``, progress output."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from conftest import SHARED, shared_file
from stream_fixtures import frames, tiny_detector, write_video

from edgerun.runtime.cli import main
from edgerun.runtime.cli.args import build_parser


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_detector(str(tmp_path_factory.mktemp("m") / "tiny.onnx"))


@pytest.fixture
def model():
    return str(shared_file("models", "yolov8n_320_int8dyn.onnx"))


def test_shell_expanded_glob_processes_every_image(model, capsys):
    photos = sorted(str(p) for p in shared_file("images").iterdir())
    assert len(photos) == 6
    assert main(["predict", model, *photos, "--json"]) == 0
    cap = capsys.readouterr()
    assert [r["source"] for r in _records(cap.out)] == photos
    assert cap.err.strip().splitlines()[-1].startswith("6 frame(s) from 6 file(s), 0 error(s)")  # also with --json


def test_source_lists_and_any_order(tiny, tmp_path, capsys):
    a, b = (str(tmp_path / n) for n in ("a.jpg", "b.png"))
    for path, img in zip((a, b), frames(2)):
        cv2.imwrite(path, img)
    runs = [["predict", tiny, a, b], ["predict", f"source={a}", f"source={b}", f"model={tiny}"],
            ["predict", f"source=[{a},{b}]", f"model={tiny}"], ["predict", a, tiny, f"source={b}"]]
    for argv in runs:
        assert main([*argv, "--json", "conf=0.2"]) == 0, argv
        assert [r["source"] for r in _records(capsys.readouterr().out)] == [a, b], argv


def test_demo_runs_only_when_asked(tmp_path, capsys):
    assert main(["predict", "--save", str(tmp_path / "demo")]) == 0  # README's set-up command
    out = capsys.readouterr().out  # the demo detector's shapes on the generated scene
    assert any(f" {shape}" in out for shape in ("circle", "square", "triangle", "star")), out
    assert len(os.listdir(tmp_path / "demo")) == 1
    img = str(tmp_path / "scene.jpg")
    cv2.imwrite(img, frames(1)[0])
    assert main(["predict", img]) == 2
    assert "no model given" in capsys.readouterr().err
    assert main(["predict", "--demo", img, "--json"]) == 0
    assert _records(capsys.readouterr().out)[0]["source"] == img


def test_save_names_never_collide(tiny, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    imgs = frames(3)
    cv2.imwrite(str(a / "x.jpg"), imgs[0])
    cv2.imwrite(str(a / "x.png"), imgs[1])
    cv2.imwrite(str(b / "x.jpg"), imgs[2])
    write_video(str(a / "x.avi"), frames(3))
    out = tmp_path / "out"
    assert main(["predict", tiny, str(a), str(b), "--save", str(out)]) == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["x.jpg", "x.mp4", "x.png", "x_2.jpg"]
    saved = cv2.imread(str(out / "x_2.jpg"))  # b/x.jpg, annotated: same size as its input
    assert saved is not None and saved.shape == imgs[2].shape


def test_stream_over_a_folder_names_each_file_and_counts_bad_ones(tiny, tmp_path, capsys):
    for i, img in enumerate(frames(2)):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), img)
    (tmp_path / "bad1.jpg").write_bytes(b"not an image")
    (tmp_path / "bad2.png").write_bytes(b"\x89PNG")
    assert main(["stream", tiny, str(tmp_path), "--json"]) == 1  # README: frame errors give exit 1
    cap = capsys.readouterr()
    assert [os.path.basename(r["source"]) for r in _records(cap.out)] == ["f0.png", "f1.png"]
    errors = [ln for ln in cap.err.splitlines() if ln.startswith("edgerun: error:")]
    assert len(errors) == 2 and "bad1.jpg" in errors[0] and "bad2.png" in errors[1], cap.err
    assert "2 error(s) (2 unreadable file(s))" in cap.err.splitlines()[-1]


def test_results_carry_class_names_and_convert_to_supervision(tiny):
    from edgerun.runtime import Detector

    with Detector.from_path(tiny, score_threshold=0.2) as det:
        d = det.detect(frames(1)[0])
    assert len(d) > 0 and d.names is det.spec.names  # the spec's tuple, not a copy
    assert {r["class_name"] for r in d.to_records()} <= {"c0", "c1", "c2", "c3"}
    assert d.speed is d.timings
    sv = pytest.importorskip("supervision")
    s = d.to_supervision()
    assert isinstance(s, sv.Detections) and len(s) == len(d)
    for field in ("xyxy", "confidence", "class_id"):
        assert np.shares_memory(getattr(s, field), getattr(d, field)), field  # zero-copy
    assert list(s.data["class_name"]) == [det.spec.names[c] for c in d.class_id]
    assert np.shares_memory(s.data["anchor_index"], d.data["anchor_index"])


def test_packaged_imagenet_names_match_the_reference_list():
    from edgerun.runtime.tasks.classifier import _imagenet_names

    ref = shared_file("labels", "classification_classes_ILSVRC2012.txt").read_text().splitlines()
    assert _imagenet_names() == tuple(line.split(",")[0].strip() for line in ref)


def test_classifier_without_metadata_names_imagenet_classes(capsys):
    model = str(shared_file("models", "mobilenetv2_224_imagenet_int8.onnx"))
    assert main(["predict", model, str(shared_file("images", "squirrel_cls.jpg")), "--json"]) == 0
    top = _records(capsys.readouterr().out)[0]["classes"][0]
    assert (top["class_id"], top["class_name"]) == (335, "fox squirrel")
    from edgerun.runtime import open_model
    with open_model(model) as m:
        assert "names" in m.spec.guessed and len(m.spec.names) == 1000
        r = m.classify(cv2.imread(str(SHARED / "images" / "chelsea.png")))
    assert r.to_records()[0]["class_name"] == "Egyptian cat"


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("edgerun 0.") and "onnxruntime" in out


def test_help_documents_every_option_and_key_value():
    p = build_parser()
    commands = p.get_default("_commands")
    assert set(commands) == {"predict", "info", "warmup", "stream", "benchmark", "batch", "export", "serve"}
    for name, sp in commands.items():
        text = sp.format_help()
        for a in sp._actions:
            if a.dest != "help":
                assert a.help, f"{name}: {a.option_strings or a.dest} has no help"
                for s in a.option_strings:
                    assert s in text, f"{name}: {s} missing from --help"
        if name in ("predict", "stream", "benchmark", "info"):
            assert "key=value" in text and "closest known" in text, name
        assert "exit status" in text, name


def test_piped_progress_has_no_carriage_returns(tiny, tmp_path, capsys):
    video = write_video(str(tmp_path / "v.avi"), frames(30))
    assert main(["predict", tiny, video, "--json"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "30 frame(s) from 1 file(s)" in err
    assert main(["benchmark", tiny, "--iterations", "3", "--warmup", "1", "--threads", "1"]) == 0
    assert "\r" not in capsys.readouterr().err


def test_compile_notice_only_when_kernels_are_not_cached(tiny, tmp_path, monkeypatch, capsys):
    from edgerun.kernels._jit import cache_dir
    from edgerun.runtime import Detector
    from edgerun.runtime.cli import compile_notice, kernels_cached

    with Detector.from_path(tiny) as det:
        det.detect(frames(1)[0])  # compiles or loads (and so caches) the detection kernels
    assert kernels_cached() and not compile_notice()
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path))
    cache_dir.cache_clear()
    try:
        assert not kernels_cached() and compile_notice()
        assert "compiling kernels (first run only" in capsys.readouterr().err
    finally:
        monkeypatch.delenv("EDGERUN_CACHE_DIR")
        cache_dir.cache_clear()
