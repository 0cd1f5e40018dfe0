"""Bad images: a generated corpus of malformed files mixed with good photos.

Fast version (~300 files) here; tests/reliability/long_runs.py runs 2,000+ and prints the figures.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from badimages import add_special_files, make_corpus, png_bomb
from conftest import shared_file
from reliability_util import json_records, run_cli

from edgerun.kernels.errors import EdgerunValueError
from edgerun.runtime.sources import ImageError, declared_size, read_image

PHOTOS = ("bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png", "chelsea.png", "squirrel_cls.jpg")
N_FAST = 250
RSS_LIMIT_MB = 1024  # the whole predict process; bombs decoded would need 3 GB to 30 TB


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("corpus") / "bad images é"
    expect = make_corpus(d, N_FAST, seed=1)
    expect.update(add_special_files(d))
    return d, expect


def test_read_image_outcome_matches_expectation(corpus):
    d, expect = corpus
    for name, want in sorted(expect.items()):
        path = str(d / name)
        try:
            img = read_image(path)
        except ImageError as exc:
            assert want in ("bad", "any"), f"{name}: good file refused: {exc}"
            assert str(exc).startswith(path), exc
            continue
        assert want in ("good", "any"), f"{name}: bad file decoded to {img.shape}"
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.size > 0


@pytest.mark.parametrize("name", ["bomb.png", "bomb.jpg", "bomb.bmp", "bomb.webp", "bomb_gif.png"])
def test_bombs_are_refused_before_decoding(corpus, name):
    d, _ = corpus
    with pytest.raises(ImageError, match=r"declares \d+x\d+ .* over the limit of 100 MP .*EDGERUN_MAX_IMAGE_PIXELS"):
        read_image(str(d / name))


def test_pixel_limit_is_configurable(monkeypatch):
    bus = str(shared_file("images", "bus.jpg"))  # 810 x 1080 = 0.87 MP
    with pytest.raises(ImageError, match="810x1080"):
        read_image(bus, max_pixels=800_000)
    assert read_image(bus, max_pixels=810 * 1080).shape == (1080, 810, 3)
    monkeypatch.setenv("EDGERUN_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match="over the limit"):
        read_image(bus)
    monkeypatch.setenv("EDGERUN_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(EdgerunValueError, match="EDGERUN_MAX_IMAGE_PIXELS"):
        read_image(bus)


def test_raised_limit_lets_the_header_through_to_the_decoder(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    p.write_bytes(png_bomb(12_000, 10))  # 0.12 MP declared; rows missing -> decoder fails cleanly
    monkeypatch.setenv("EDGERUN_MAX_IMAGE_PIXELS", "100000")
    with pytest.raises(ImageError, match="over the limit"):
        read_image(str(p))
    with pytest.raises(ImageError, match="not a decodable image"):
        read_image(str(p), max_pixels=200_000)


def test_png_chunk_overrun_is_refused_before_decoding(corpus):
    """Found by the 2,000-file run: one flipped bit in an IDAT length made OpenCV allocate 1.4 GB."""
    d, _ = corpus
    with pytest.raises(ImageError, match=r"corrupt PNG: chunk 'IDAT' .* declares 1426071552 bytes"):
        read_image(str(d / "png_chunk_overrun.png"))
    for name in ("astronaut.png", "coffee.png", "chelsea.png"):  # real PNGs pass the chunk walk
        assert read_image(str(shared_file("images", name))).ndim == 3


def test_declared_size_reads_real_headers():
    for name, wh in (("bus.jpg", (810, 1080)), ("zidane.jpg", (1280, 720)), ("astronaut.png", (512, 512))):
        assert declared_size(np.fromfile(shared_file("images", name), np.uint8)) == wh
    assert declared_size(b"not an image") is None


def test_predict_over_corpus_mixed_with_photos(corpus):
    """Exit 1, every file exactly once, bad ones named with an edgerun error, good ones processed."""
    model = str(shared_file("models", "yolov8n_320_int8dyn.onnx"))
    d, expect = corpus
    for name in PHOTOS:
        link = d / f"photo {name}"
        if not link.exists():
            os.symlink(shared_file("images", name), link)
    res = run_cli(["predict", model, str(d), "--json"], timeout=240)
    assert not res.crashed and res.returncode == 1, res.describe()  # 1: some inputs unreadable
    assert "Traceback" not in res.stderr, res.describe()
    recs = {os.path.basename(r["source"]): r for r in json_records(res.stdout)}
    want = {**expect, **{f"photo {n}": "good" for n in PHOTOS}}
    assert set(recs) == set(want), set(recs) ^ set(want)
    for name, rec in recs.items():
        if "error" in rec:
            assert want[name] in ("bad", "any"), f"{name}: good file failed: {rec['error']}"
            assert name in rec["error"] and f"edgerun: error: {rec['error']}" in res.stderr
        else:
            assert want[name] in ("good", "any"), f"{name}: bad file processed: {rec}"
            assert rec["width"] > 0 and rec["height"] > 0
    assert len(recs["photo bus.jpg"]["detections"]) >= 4
    assert res.maxrss_mb is not None and res.maxrss_mb < RSS_LIMIT_MB, res.maxrss_mb


def test_predict_on_only_good_files_exits_0(tmp_path):
    model = str(shared_file("models", "yolov8n_320_int8dyn.onnx"))
    for name in PHOTOS[:2]:
        os.symlink(shared_file("images", name), tmp_path / name)
    res = run_cli(["predict", model, str(tmp_path), "--json"], timeout=120)
    assert res.returncode == 0, res.describe()
    assert len(json_records(res.stdout)) == 2
