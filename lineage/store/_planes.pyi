"""Type stubs of the C kernels in `_planes.c` (see `lineage.store.planes`)."""

from collections.abc import Sequence

import numpy as np

def merge(
    out: np.ndarray,
    planes: Sequence[bytes | memoryview | np.ndarray | None],
    pred: np.ndarray | None,
    mode: int = 0,
) -> None: ...
def cast_f32(src: np.ndarray, out: np.ndarray, target: str) -> None: ...
def zero_masked(out: np.ndarray, mask: np.ndarray, itemsize: int) -> None: ...
def split(
    src: np.ndarray, pred: np.ndarray | None, out: np.ndarray, itemsize: int, mode: int = 0
) -> None: ...
def mask_bits(src: np.ndarray, pred: np.ndarray, out: np.ndarray, itemsize: int) -> None: ...
def exponent_histogram(pred: np.ndarray, itemsize: int, shift: int, hist: np.ndarray) -> None: ...
def group_split(
    src: np.ndarray,
    pred: np.ndarray,
    out: np.ndarray,
    itemsize: int,
    shift: int,
    lut: np.ndarray,
    bounds: np.ndarray,
) -> None: ...
def group_merge(
    out: np.ndarray,
    planes: np.ndarray,
    pred: np.ndarray,
    itemsize: int,
    shift: int,
    lut: np.ndarray,
    bounds: np.ndarray,
) -> None: ...
