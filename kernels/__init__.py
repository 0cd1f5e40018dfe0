"""edgerun.kernels: Numba-compiled pre/post-processing on numpy arrays.

Every public function validates its input and then calls a compiled kernel. Nothing is compiled at
import; kernels compile (or load from edgerun's cache) on first use, or ahead of time with
``edgerun warmup``.
"""
from .errors import EdgerunError, EdgerunTypeError, EdgerunValueError
from ._jit import cache_dir, modules_cached
from .boxes import scale_boxes
from .decode import Candidates, decode
from .draw import draw_boxes
from .nms import nms

__all__ = ["EdgerunError", "EdgerunTypeError", "EdgerunValueError", "cache_dir",
           "modules_cached"]
__all__ += ["Candidates", "decode", "nms", "scale_boxes", "draw_boxes"]
from .preprocess import PIXEL_FORMATS, Geometry, letterbox, plan  # noqa: E402
__all__ += ["Geometry", "plan", "letterbox", "PIXEL_FORMATS"]
