"""``edgerun export CHECKPOINT.pt --arch module:callable``: a torch state_dict to a verified ONNX file.

The checkpoint is read with ``torch.load(weights_only=True)`` (tensors and plain containers only).
Anything else needs full unpickling, which runs arbitrary code stored in the file, so it is refused
unless ``--trust-checkpoint``. ``--arch`` names a zero-argument callable returning the ``nn.Module``
the state_dict belongs to; export and verification are ``torch_export.export_module``'s.
"""
from __future__ import annotations

import argparse
import importlib
import pickle
import re
from typing import Any

from .torch_export import ExportError, export_module

__all__ = ["is_torch_checkpoint", "run_torch_export"]

SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
_WRAPPER_KEYS = ("state_dict", "model_state_dict")  # common {"state_dict": ..., "epoch": ...} layouts


def is_torch_checkpoint(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "arch", None)) or str(args.source).lower().endswith(SUFFIXES)


def load_state_dict(path: str, trust: bool = False) -> dict[str, Any]:
    """The state_dict in ``path``; ExportError (with the reason) when it is not one or is unsafe."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise ExportError(
                f"{path}: the checkpoint holds Python objects beyond tensors, so torch.load(weights_only=True) "
                f"refuses it ({first}). Loading it needs full unpickling, which can execute arbitrary code "
                "stored in the file; pass --trust-checkpoint only for files you made or fully trust, or "
                "re-save it as torch.save(model.state_dict(), path)") from None
        obj = torch.load(path, map_location="cpu", weights_only=False)  # noqa: S614 - user opted in
    except (OSError, RuntimeError) as exc:
        raise ExportError(f"{path}: cannot read the checkpoint: {exc}") from None
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in _WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return obj[key]
    if not _is_state_dict(obj):
        what = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else type(obj).__name__
        raise ExportError(f"{path}: not a state_dict (a mapping of parameter names to tensors): got {what}; "
                          "save one with torch.save(model.state_dict(), path)")
    return obj


def _is_state_dict(obj: Any) -> bool:
    import torch
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def build_module(arch: str):
    """``module:callable`` -> the nn.Module it returns."""
    import torch

    mod_name, _, attr = arch.partition(":")
    if not mod_name or not attr:
        raise ExportError(f"--arch: expected module:callable (e.g. mypkg.models:make_net), got {arch!r}")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ExportError(f"--arch {arch}: {exc} (is the module on PYTHONPATH?)") from None
    module = factory()
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"--arch {arch}: returned {type(module).__name__}, expected a torch.nn.Module")
    return module


def _offending_module(module: Any, example: Any, message: str) -> str:
    """Which submodule holds the op named in a torch.onnx error (``aten::op``), via the traced scopes."""
    import torch

    ops = set(re.findall(r"aten::\w+", message))
    if not ops:
        return ""
    try:
        with torch.no_grad():
            graph = torch.jit.trace(module, (example,), check_trace=False).inlined_graph
    except Exception:  # noqa: BLE001 - best effort; the torch message is reported regardless
        return ""
    for node in graph.nodes():
        if node.kind() in ops:
            path = node.scopeName().split("/")[-1].replace("__module.", "", 1).replace("__module", "")
            try:
                name = type(module.get_submodule(path)).__name__ if path else type(module).__name__
            except AttributeError:
                name = "?"
            return f"{node.kind()} in module {path or '<root>'!r} ({name})"
    return ""


def run_torch_export(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise ExportError("exporting a torch checkpoint needs torch: pip install torch "
                          "--index-url https://download.pytorch.org/whl/cpu") from None
    from edgerun.runtime.spec import ModelSpec

    if not args.arch:
        raise ExportError(f"{args.source}: a torch checkpoint needs --arch module:callable (the nn.Module "
                          "its state_dict belongs to)")
    if not args.imgsz:
        raise ExportError("a torch checkpoint needs --imgsz H [W] (the input size to trace and verify)")
    if args.half or args.int8:
        raise ExportError("--half/--int8 apply to ONNX sources; export fp32 first, then run "
                          "`edgerun export OUT.onnx --half/--int8`")
    h, w = args.imgsz[0], args.imgsz[-1]
    state = load_state_dict(args.source, trust=args.trust_checkpoint)
    module = build_module(args.arch)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{args.source} does not fit --arch {args.arch}: {exc}") from None
    module.eval()
    example = torch.zeros(1, 3, h, w)
    fields: dict[str, Any] = {"input_size": (h, w), "dynamic_batch": args.dynamic}
    if args.task:
        fields["task"] = args.task
    if args.task == "classify":
        with torch.no_grad():
            out = module(example)
        n = (out[0] if isinstance(out, (list, tuple)) else out).shape[-1]
        fields.update(head="classify", resize="center_crop", num_classes=int(n),
                      resize_short=int(round(min(h, w) * 256 / 224)))
    spec = ModelSpec(**fields)
    try:  # note: on failure torch.onnx also dumps the IR graph on stderr (from C++, not redirectable here)
        report = export_module(module, args.output, spec, (1, 3, h, w), opset=args.opset, dynamic=args.dynamic)
    except ExportError:
        raise
    except Exception as exc:  # torch.onnx failures: unsupported ops, tracing errors
        where = _offending_module(module, example, str(exc))
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"torch.onnx could not export --arch {args.arch}: {type(exc).__name__}: {first}"
                          + (f" [{where}]" if where else "")) from None
    print(f"{report['path']}: written (opset {report['opset']}, max |torch - ORT| "
          f"{report['max_abs_error']:.3g} over {report['n_inputs']} inputs)")
    return 0
