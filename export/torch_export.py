"""Export a torch module to a verified, self-describing ONNX file.

``export_module`` traces the module with torch's TorchScript-based exporter (``dynamo=False``:
no onnxscript needed), writes edgerun's metadata (``ModelSpec.to_metadata()``) into
``metadata_props``, reloads the file with edgerun's own ``Session`` + ``resolve_spec`` to check
the metadata round-trips, and compares ONNX Runtime against torch on the same inputs. torch is
imported inside the function only.
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import Any, Sequence

import numpy as np

from edgerun.kernels.errors import EdgerunError
from edgerun.runtime.spec import ModelSpec

__all__ = ["export_module", "ExportError", "spec_diff"]

_SPEC_CHECK_SKIP = {"output_names", "source", "guessed"}


class ExportError(EdgerunError, ValueError):
    """The exported file does not reproduce the module, or its metadata does not round-trip."""


def export_module(module: Any, out_path: str, spec: ModelSpec, example_shape: Sequence[int], *,
                  opset: int = 17, dynamic: bool = False, output_names: Sequence[str] = ("output0",),
                  verify_inputs: Sequence[np.ndarray] | None = None, atol: float = 1e-4,
                  rtol: float = 1e-4, seed: int = 0,
                  dynamic_axes: dict[str, dict[int, str]] | None = None) -> dict[str, Any]:
    """Export ``module`` (eval mode) to ``out_path`` and verify it. Returns a report dict.

    ``example_shape``: the input tensor shape, e.g. ``(1, 3, 320, 320)``; ``dynamic`` makes the
    batch axis symbolic. ``verify_inputs``: arrays fed to both torch and ORT, the first one also
    traced (default: three seeded uniform [0, 1) tensors). ``dynamic_axes``: extra symbolic axes
    per input/output name (torch.onnx's format), e.g. ``{"input": {2: "h", 3: "w"}}`` for a fully
    convolutional model with ``spec.dynamic_hw``; verify then with inputs of several sizes.
    Raises ``ExportError`` when any output differs by more than ``atol + rtol * |torch|`` or the
    metadata read back differs from ``spec``; the report (``max_abs_error``, ``max_error_ratio`` = worst diff / allowed) is in the message.
    """
    import torch

    module = module.eval()
    example_shape = tuple(int(d) for d in example_shape)
    _check_spec(spec, example_shape, dynamic)
    rng = np.random.default_rng(seed)
    inputs = [np.ascontiguousarray(x, np.float32) for x in verify_inputs] if verify_inputs is not None \
        else [rng.random(example_shape, dtype=np.float32) for _ in range(3)]
    example = inputs[0]
    t0 = time.perf_counter()
    _torch_export(module, torch.from_numpy(example), out_path, spec.input_name, list(output_names),
                  opset, dynamic, dynamic_axes)
    _write_metadata(out_path, spec)
    report = {"path": os.path.abspath(out_path), "bytes": os.path.getsize(out_path), "opset": opset,
              "export_seconds": round(time.perf_counter() - t0, 3), "versions": _versions()}
    report.update(_verify(module, out_path, spec, inputs, atol, rtol))
    if not report["ok"]:
        raise ExportError(f"{out_path}: export verification failed: {report['problems']}; report: {report}")
    return report


def _check_spec(spec: ModelSpec, shape: tuple[int, ...], dynamic: bool) -> None:
    if dynamic != spec.dynamic_batch:
        raise ExportError(f"dynamic={dynamic} but spec.dynamic_batch={spec.dynamic_batch}; make them agree")
    if len(shape) != 4:
        raise ExportError(f"example_shape: expected (N, C, H, W) or (N, H, W, C), got {shape}")
    hw = (shape[2], shape[3]) if spec.layout == "nchw" else (shape[1], shape[2])
    if tuple(spec.input_size) != hw:
        raise ExportError(f"spec.input_size {tuple(spec.input_size)} does not match example_shape {shape} "
                          f"({spec.layout}); pass a spec built for this input")


def _torch_export(module: Any, example: Any, out_path: str, input_name: str, output_names: list[str],
                  opset: int, dynamic: bool, extra_axes: dict[str, dict[int, str]] | None = None) -> None:
    import torch

    axes = {input_name: {0: "batch"}, **{n: {0: "batch"} for n in output_names}} if dynamic else {}
    for name, named in (extra_axes or {}).items():
        axes[name] = {**axes.get(name, {}), **named}
    axes = axes or None
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # dynamo=False is deliberate (no onnxscript dependency); torch warns that it is legacy.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchScript-based ONNX")
        torch.onnx.export(module, (example,), out_path, input_names=[input_name],
                          output_names=output_names, opset_version=opset, dynamic_axes=axes,
                          do_constant_folding=True, dynamo=False)


def _write_metadata(out_path: str, spec: ModelSpec) -> None:
    import onnx

    model = onnx.load(out_path)
    props = {p.key: p.value for p in model.metadata_props}
    props.update(spec.to_metadata())
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, out_path)


def _verify(module: Any, out_path: str, spec: ModelSpec, inputs: list[np.ndarray], atol: float,
            rtol: float) -> dict[str, Any]:
    """Run torch and ORT on the same inputs; reload the spec the way the runtime does."""
    import torch

    from edgerun.runtime.session import Session
    from edgerun.runtime.spec import resolve_spec

    session = Session(out_path, threads=1)
    abs_errors, ratios, problems = [], [], []
    for x in inputs:
        with torch.no_grad():
            ref = _as_list(module(torch.from_numpy(x.copy())))
        got = session.run({spec.input_name: x})
        if [r.shape for r in ref] != [g.shape for g in got]:
            problems.append(f"output shapes differ: torch {[r.shape for r in ref]} vs ORT "
                            f"{[g.shape for g in got]}")
            continue
        for r, g in zip(ref, got):
            diff = np.abs(r.astype(np.float64) - g)
            abs_errors.append(float(diff.max(initial=0.0)))
            ratios.append(float((diff / (atol + rtol * np.abs(r))).max(initial=0.0)))
    max_err = max(abs_errors) if abs_errors else float("nan")
    ratio = max(ratios) if ratios else float("nan")
    if ratios and ratio > 1.0:
        problems.append(f"max abs error {max_err:.3g} exceeds atol {atol:g} + rtol {rtol:g} * |torch| "
                        f"({ratio:.3g}x the allowed difference)")
    resolved = resolve_spec(session.metadata, session.inputs, session.outputs)
    diff_fields = spec_diff(spec, resolved)
    if diff_fields:
        problems.append(f"metadata does not round-trip: {diff_fields}")
    return {"max_abs_error": max_err, "max_error_ratio": ratio, "atol": atol, "rtol": rtol,
            "n_inputs": len(inputs), "spec_roundtrip": not diff_fields,
            "input_shapes": [i.shape for i in session.inputs],
            "output_shapes": [o.shape for o in session.outputs],
            "ok": not problems, "problems": problems}


def _as_list(out: Any) -> list[np.ndarray]:
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [o.detach().cpu().numpy() for o in outs]


def spec_diff(want: ModelSpec, got: ModelSpec) -> dict[str, tuple]:
    """Fields that differ between the spec written and the spec the runtime reads back."""
    out = {}
    for f in dataclasses.fields(ModelSpec):
        if f.name not in _SPEC_CHECK_SKIP and getattr(want, f.name) != getattr(got, f.name):
            out[f.name] = (getattr(want, f.name), getattr(got, f.name))
    return out


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
