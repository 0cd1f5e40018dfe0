"""A deterministic corpus of malformed, odd and hostile image files, generated into a folder.

``make_corpus(dest, n, seed)`` writes about ``n`` files and returns ``{file name: expectation}``:
"bad" (edgerun must report it), "good" (must be processed) or "any" (corrupted data that a
decoder may still read, e.g. a JPEG with flipped bits: either outcome is fine, but it must be
one of the two, reported under its name). Used by tests/reliability and tests/reliability/long_runs.py.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

FORMATS = (".jpg", ".png", ".bmp", ".webp", ".webp-lossless", ".gif")
NON_IMAGES = {
    "text": b"hello, this is not an image\n" * 20,
    "html": b"<!doctype html><html><body><img src=x.jpg></body></html>\n",
    "json": b'{"boxes": [[0, 0, 1, 1]], "image": "elsewhere.jpg"}',
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
    "zip": b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18),
    "elf": b"\x7fELF\x02\x01\x01" + bytes(57),
    "whitespace": b" \n\t\r\n" * 10,
    "nul": bytes(4096),
}


def encode(img: np.ndarray, fmt: str) -> bytes:
    """Encode with OpenCV; ``.webp`` is lossy (VP8), ``.webp-lossless`` is VP8L."""
    import cv2

    ext, params = fmt, []
    if fmt == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, 60]
    if fmt == ".webp-lossless":
        ext, params = ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"cv2 cannot encode {fmt}")
    return buf.tobytes()


def _base_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    img = img + rng.integers(0, 40, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ crafted headers
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    """A PNG whose header declares w x h (RGB) with a tiny compressed row stream."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(64 * 1024), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_bomb(jpeg: bytes, w: int = 60_000, h: int = 60_000) -> bytes:
    """A real JPEG with its frame header (SOF0) patched to declare w x h."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + struct.pack(">HH", h, w) + jpeg[i + 9:]


def bmp_bomb(bmp: bytes, w: int = 200_000, h: int = -200_000) -> bytes:
    return bmp[:18] + struct.pack("<ii", w, h) + bmp[26:]


def png_chunk_overrun(png: bytes, length: int = 0x55002000) -> bytes:
    """A real PNG whose IDAT length field claims 1.4 GB (OpenCV 5 allocates it before reading)."""
    i = png.index(b"IDAT") - 4
    return png[:i] + struct.pack(">I", length) + png[i + 4:]


def gif_bomb(gif: bytes) -> bytes:
    return gif[:6] + struct.pack("<HH", 65535, 65535) + gif[10:]


def webp_bomb() -> bytes:
    """An extended (VP8X) WebP declaring a 16384 x 16384 canvas."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def cmyk_jpeg(w: int = 24, h: int = 16) -> bytes:
    """A baseline 4-component (Adobe CMYK) JPEG, crafted: every block is DC 0 with an immediate
    end-of-block, coded with 1-bit Huffman tables (cv2 cannot write CMYK)."""
    def seg(marker: int, data: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data

    adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)  # transform 0: plain CMYK
    dqt = b"\x00" + bytes([1] * 64)
    sof = struct.pack(">BHHB", 8, h, w, 4) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(4))
    one_code = bytes([1] + [0] * 15) + b"\x00"  # one symbol (0) of length 1: code "0"
    dht = b"\x00" + one_code + b"\x10" + one_code  # DC table 0, AC table 0
    sos = bytes([4]) + b"".join(bytes([i + 1, 0x00]) for i in range(4)) + b"\x00\x3f\x00"
    mcus = -(-w // 8) * -(-h // 8)  # 4 blocks x 2 bits = one zero byte per MCU
    return (b"\xff\xd8" + seg(0xEE, adobe) + seg(0xDB, dqt) + seg(0xC0, sof) + seg(0xC4, dht)
            + seg(0xDA, sos) + bytes(mcus) + b"\xff\xd9")


# ------------------------------------------------------------------ mutations
def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[:int(rng.integers(1, len(data)))]


def bitflip(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(buf)))
        buf[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def header_flip(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    i = int(rng.integers(0, min(64, len(buf))))
    buf[i] = int(rng.integers(0, 256))
    return bytes(buf)


def wrong_magic(data: bytes, rng: np.random.Generator) -> bytes:
    magic = (b"XXXX", b"\x00\x00\x00\x00", b"\xde\xad\xbe\xef")[int(rng.integers(0, 3))]
    return magic + data[4:]


MUTATIONS: dict[str, tuple[Callable, str]] = {
    "trunc": (truncate, "any"), "flip": (bitflip, "any"), "hdr": (header_flip, "any"),
    "magic": (wrong_magic, "bad"),
}


def _ext(fmt: str) -> str:
    """A file extension edgerun picks up from a folder (GIF content goes under .png)."""
    return ".webp" if fmt == ".webp-lossless" else ".png" if fmt == ".gif" else fmt


def _odd_valid(rng: np.random.Generator) -> dict[str, bytes]:
    """Unusual but valid images: every one must be processed."""
    img = _base_image(rng, 23, 31)
    out = {f"tiny_1x1_{fmt[1:].replace('-', '_')}{_ext(fmt)}": encode(img[:1, :1], fmt) for fmt in FORMATS}
    out["png16_gray.png"] = encode((img[..., 0].astype(np.uint16) * 257), ".png")
    out["png16_bgr.png"] = encode(img.astype(np.uint16) * 257, ".png")
    out["png_bgra.png"] = encode(np.dstack([img, img[..., :1]]), ".png")
    out["png_gray.png"] = encode(img[..., 1], ".png")
    out["jpeg_gray.jpg"] = encode(img[..., 2], ".jpg")
    out["cmyk.jpg"] = cmyk_jpeg()
    out["tall_300x1.png"] = encode(np.repeat(img[:1, :1], 300, 0), ".png")
    out["wide_1x300.bmp"] = encode(np.repeat(img[:1, :1], 300, 1), ".bmp")
    out["png_named.jpg"] = encode(img, ".png")
    out["gif_named.png"] = encode(img, ".gif")
    return out


def _hostile(rng: np.random.Generator) -> dict[str, bytes]:
    """Files that must be refused: bombs, empty files, non-images with image names."""
    img = _base_image(rng, 16, 16)
    out = {"bomb.png": png_bomb(), "bomb.jpg": jpeg_bomb(encode(img, ".jpg")),
           "bomb.bmp": bmp_bomb(encode(img, ".bmp")), "bomb.webp": webp_bomb(),
           "bomb_gif.png": gif_bomb(encode(img, ".gif")), "zero_bytes.jpg": b"", "zero_bytes.png": b"",
           "zero_width_tall.png": png_bomb(0, 2**31 - 1), "tall_1px.bmp": bmp_bomb(encode(img, ".bmp"), 1, 2**24),
           "zero_width_tall.jpg": jpeg_bomb(encode(img, ".jpg"), 0, 65535),
           "png_chunk_overrun.png": png_chunk_overrun(encode(img, ".png"))}
    for i, (kind, data) in enumerate(NON_IMAGES.items()):
        out[f"not_image_{kind}{('.jpg', '.png', '.bmp', '.webp')[i % 4]}"] = data
    out["random_bytes.jpg"] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    return out


def make_corpus(dest: str | os.PathLike, n: int = 300, seed: int = 0) -> dict[str, str]:
    """Write about ``n`` files (at least the fixed odd/hostile set) into ``dest``; see module doc."""
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = {name: ("good", data) for name, data in _odd_valid(rng).items()}
    files.update({name: ("bad", data) for name, data in _hostile(rng).items()})
    bases = [_base_image(rng, int(rng.integers(8, 97)), int(rng.integers(8, 97))) for _ in range(8)]
    encoded = [(fmt, encode(b, fmt)) for b in bases for fmt in FORMATS]
    kinds = list(MUTATIONS)
    i = 0
    while len(files) < n:
        fmt, data = encoded[i % len(encoded)]
        kind = kinds[(i // len(encoded)) % len(kinds)]
        fn, expect = MUTATIONS[kind]
        files[f"m{i:05d}_{kind}_{fmt[1:]}{_ext(fmt)}"] = (expect, fn(data, rng))
        i += 1
    for name, (_, data) in files.items():
        (dest / name).write_bytes(data)
    return {name: expect for name, (expect, _) in files.items()}


def add_special_files(dest: str | os.PathLike) -> dict[str, str]:
    """Non-regular entries with image names: a FIFO, /dev/zero, a directory, a dangling symlink."""
    dest = Path(dest)
    os.mkfifo(dest / "fifo.jpg")
    os.symlink("/dev/zero", dest / "dev_zero.png")
    (dest / "directory.jpg").mkdir()
    os.symlink(dest / "does-not-exist.jpg", dest / "dangling.jpg")
    return {"fifo.jpg": "bad", "dev_zero.png": "bad", "directory.jpg": "bad", "dangling.jpg": "bad"}
