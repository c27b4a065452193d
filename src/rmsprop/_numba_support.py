"""What the Numba kernels share: compiling helpers, raw memory, the work table, launching.

Both CPU kernels (:mod:`rmsprop._kernels`, the family rule; :mod:`rmsprop._torch_kernel`,
torch's order) run one parallel loop over the chunks of a group of tensors given as
a table of addresses. This module holds the pieces they have in common: the
compile options, pointers made from addresses, the table of chunks and balanced
parts (:func:`work_table`), and the launch, which serializes where Numba's
threading layer needs it and turns serial in forked children. It imports Numba.
"""

import contextlib
import inspect
import os
import sys
import threading
import types
import warnings
import zlib
from collections.abc import Callable
from typing import Any, Final, cast

import numba
import numpy as np
import numpy.typing as npt
from numba import njit
from numba.extending import intrinsic

NDArray = npt.NDArray[Any]

#: From this many elements on, kernels run on every thread; below, on one. Measured
#: here: 1.7 µs serial against 2.0 µs parallel at 4,096 float32 elements, 6.0 against
#: 4.2 µs at 16,384 (a parallel launch costs about 1.3 µs).
PARALLEL_MIN: Final = 1 << 13
#: Threading layers that take concurrent parallel launches; Numba's fallback
#: ``workqueue`` layer aborts the process on them, so launches are serialized there.
THREAD_SAFE_LAYERS: Final = frozenset({"omp", "tbb"})
#: Elements per chunk of a group launch, at most; at least MIN_CHUNK.
GROUP_CHUNK: Final = 1 << 14
#: Chunks are smaller where a launch has few elements, so that every thread gets some:
#: a launch is cut into at least SPLIT chunks of at least MIN_CHUNK elements each.
MIN_CHUNK: Final = 1 << 10
SPLIT: Final = 16
#: Chunks are multiples of this many elements, so that every chunk starts a cache line
#: and a block of 8-bit state (rmsprop._blockwise.BLOCK, whose scale it writes alone).
ALIGN: Final = 256
#: Parts of a group launch's chunks, of balanced element counts: a parallel loop over
#: the parts gives each of T threads (T dividing PARTS: 1 to 6, 8, 10, 12, 15, 16, ...)
#: the same work within one chunk. A loop over the chunks themselves gave one thread
#: 5% more than the other over ResNet-50's tensors (chunks that end a tensor are short).
PARTS: Final = 240


def source_version(*modules: types.ModuleType) -> int:
    """A checksum of the sources of ``modules`` and of this module, for a kernel to close
    over: Numba keys a kernel's disk cache on its own code, its closure values and its
    file's timestamp, not on the functions it calls, so a kernel that closes over the
    version of every source it compiles never loads a build of older helpers."""
    sources = (inspect.getsource(module) for module in (*modules, sys.modules[__name__]))
    return zlib.crc32("".join(sources).encode())


def cached_kernel(function: Any, key: tuple[Any, ...], **options: Any) -> Any:
    """``function`` compiled with a disk cache of its own for ``key``, the plain values
    it closes over (the build it is): every build gets its own index and data files.
    Numba's cache files are written whole (no process sees half a file), but two
    processes adding different builds to one index at once can pair one build's key
    with the other's code; with one build per file, writers write the same thing."""
    function.__qualname__ = f"{function.__name__}_{zlib.crc32(repr(key).encode()):08x}"
    return njit(function, error_model="numpy", cache=True, **options)


def jit(function: Any) -> Any:
    """A helper of the kernels, compiled on its own; LLVM inlines it into the loops
    that call it. (Numba's ``inline="always"`` once made serial loops vectorize, 2.8
    against 0.35 ns per element; with Numba 0.60 and 0.68 the loops run as fast
    without it, 1.75 against 1.74 ns per element for float32 data over 2^18 elements
    on 0.68, and each kernel build compiles in 10 to 25 % less time.)"""
    return njit(function, error_model="numpy")


def bitcast_to(result: Any, argument: Any) -> Any:
    """An intrinsic that reinterprets the bits of an ``argument`` as a ``result``."""

    def typer(typingctx: Any, value: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.bitcast(args[0], context.get_value_type(result))

        return result(argument), codegen

    return intrinsic(typer)


float32_of_bits: Any = bitcast_to(numba.types.float32, numba.types.uint32)
bits_of_float32: Any = bitcast_to(numba.types.uint32, numba.types.float32)
bits_of_float64: Any = bitcast_to(numba.types.int64, numba.types.float64)


def _pointer_of(typingctx: Any, address: Any, dtype: Any) -> Any:
    """The int64 ``address`` as a pointer to ``dtype`` values (for numba.carray)."""
    signature = cast(Any, numba.types).CPointer(dtype.dtype)(address, dtype)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return signature, codegen


pointer: Any = intrinsic(_pointer_of)
carray: Any = numba.carray  # type: ignore[attr-defined]


@jit
def column(addresses: Any, t: int, k: int, first: int, size: int, kind: Any, count: int) -> Any:
    """Column ``k`` of tensor ``t``'s row of addresses, from element ``first`` (of
    ``size`` bytes, of type ``kind``), as an array of ``count`` elements."""
    return carray(pointer(addresses[t, k] + first * size, kind), count)


def work_table(sizes: NDArray, largest: int = GROUP_CHUNK) -> tuple[NDArray, NDArray]:
    """The chunks of tensors of ``sizes`` elements, and their parts.

    ``chunks[c]`` is (tensor, first element, element count) of chunk ``c``: the
    tensors cut into runs of at most ``largest`` elements (fewer, down to
    :data:`MIN_CHUNK`, where the tensors hold fewer than :data:`SPLIT` times
    ``largest`` in all). Part ``k`` is chunks ``parts[k]`` to ``parts[k + 1]``:
    :data:`PARTS` consecutive runs of chunks holding as nearly the same number of
    elements as whole chunks allow.
    """
    total = int(sizes.sum())
    chunk = min(largest, max(MIN_CHUNK, -(-total // SPLIT // ALIGN) * ALIGN))
    counts = (sizes + chunk - 1) // chunk
    owner = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
    firsts = np.cumsum(counts) - counts
    starts = (np.arange(owner.size, dtype=np.int64) - firsts[owner]) * chunk
    lengths = np.minimum(chunk, sizes[owner] - starts)
    chunks = np.stack([owner, starts, lengths], axis=1)
    ends = np.cumsum(lengths)  # elements up to each chunk
    targets = np.arange(1, PARTS, dtype=np.float64) * (total / PARTS)
    inner = np.searchsorted(ends, targets, side="left") + 1
    parts = np.concatenate([[0], np.minimum(inner, owner.size), [owner.size]]).astype(np.int64)
    return chunks, parts


_launch_lock = threading.Lock()
_layer: str | None = None
#: Whether kernels may run on every thread; off in forked children and after a
#: threading layer failed to start (see _parallel_launch).
_parallel = True


def launch(build: Callable[[bool], Any], elements: int, *args: Any) -> None:
    """Run a kernel over ``elements`` elements on ``args``: ``build(True)``, its parallel
    build, from :data:`PARALLEL_MIN` elements on where threads can be had, else
    ``build(False)``, its serial twin."""
    if elements >= PARALLEL_MIN and _parallel:
        _parallel_launch(build, *args)
    else:
        build(False)(*args)


def _parallel_launch(build: Callable[[bool], Any], *args: Any) -> None:
    """Run ``build(True)``, a parallel kernel, on ``args``.

    Serialized unless the threading layer is known to take concurrent launches. A
    layer that fails to start (``NUMBA_THREADING_LAYER=tbb`` without TBB, say) fails
    before the loop runs: the kernels turn serial for the process, with one warning.
    """
    global _layer, _parallel  # noqa: PLW0603
    if _layer in THREAD_SAFE_LAYERS:
        build(True)(*args)
        return
    with _launch_lock:
        if not _parallel:  # another thread found the layer broken meanwhile
            build(False)(*args)
            return
        try:
            build(True)(*args)
        except (ValueError, RuntimeError, OSError, ImportError) as error:
            if _layer is not None:  # a layer that ran before: not a start-up failure
                raise
            _parallel = False
            warnings.warn(
                f"rmsprop: Numba's threading layer failed to start "
                f"({str(error).splitlines()[0]}); the fused kernels run on one thread in this "
                "process",
                RuntimeWarning,
                stacklevel=5,
            )
            build(False)(*args)
            return
        with contextlib.suppress(ValueError):  # no layer started yet: keep serializing
            _layer = numba.threading_layer()  # type: ignore[attr-defined]


def _no_parallel_kernels_in_child() -> None:
    """After fork, a child must not start a thread pool: GNU OpenMP kills a forked child
    whose parent used it, and other layers can hang on locks held at the fork."""
    global _parallel  # noqa: PLW0603
    _parallel = False


os.register_at_fork(after_in_child=_no_parallel_kernels_in_child)
