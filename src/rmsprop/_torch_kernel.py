"""PyTorch's own RMSProp arithmetic in one fused CPU pass: ``torch.optim.RMSprop``'s
numbers, bit for bit, at the speed of a fused kernel.

On the CPU, ``torch.optim.RMSprop`` rounds after every operation, in the
parameters' dtype, in this order (measured against torch 2.13's kernels on AVX2
and AVX-512 builds; ``fma`` is one rounding of ``x * y + z``):

1. ``g = -g`` (``maximize``); ``g = fma(p, weight_decay, g)`` (``grad.add(param, alpha=wd)``);
2. ``v = fma(round((1 - alpha) * g), g, round(v * alpha))`` (``mul_``, then ``addcmul_``);
3. centered: ``a = fma(w, g - a, a)`` if ``|w| < 0.5`` else ``fma(w - 1, g - a, g)``
   with ``w = 1 - alpha`` (``lerp_``), and the root's argument ``fma(-a, a, v)``;
4. ``d = sqrt(...) + eps``, the root taken by Intel MKL's ``vsSqrt``/``vdSqrt`` in
   high-accuracy mode (not correctly rounded: 0.7 % of roots are 1 ulp off IEEE's);
5. momentum: ``b = round(b * momentum) + round(g / d)`` and ``p = fma(b, -lr, p)``;
   else ``p = p + round(round(-lr * g) / d)`` (``addcdiv_``).

This kernel performs that sequence per element, and takes its square roots from
the MKL routine inside the torch library of this process, a block of
:data:`CHUNK` elements per call. Whether it reproduces this process's torch is
checked at first use of each option combination and dtype (:func:`matches`);
``rmsprop.torch`` uses it only where it does, and torch's functional RMSProp
elsewhere.

This module imports torch and Numba: ``rmsprop.torch`` imports it on first use.
"""

import ctypes
import os
import sys
from collections.abc import Sequence
from functools import cache
from typing import Any, Final, cast

import numba
import numpy as np
import torch
from numba import prange
from numba.extending import intrinsic

from rmsprop import _torch_probe
from rmsprop._kinds import Member
from rmsprop._numba_support import cached_kernel, column, jit, launch, source_version, work_table
from rmsprop._options import Hyperparameters
from rmsprop._torch_probe import TorchSwitches

#: Elements per chunk: the unit of parallel work, and of one call of MKL's square root
#: (a call costs about 2.5 µs: measured 2.8 ns per element in calls of 1,024).
CHUNK: Final = 1 << 14
#: MKL VML's mode as ATen passes it: high accuracy, denormals kept, errors ignored.
VML_MODE: Final = 0x2 | 0x140000 | 0x100
DTYPES: Final = (torch.float32, torch.float64)


def _vml_sqrt_addresses() -> dict[torch.dtype, int] | None:
    """The addresses of MKL's vsSqrt and vdSqrt in this process's torch, or None."""
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        library = ctypes.CDLL(path)
        single, double = library.VMSSQRT_, library.VMDSQRT_
    except (OSError, AttributeError):  # another platform, or a torch built without MKL
        return None
    return {  # the functions' entry points, as integers
        torch.float32: cast(int, ctypes.cast(single, ctypes.c_void_p).value),
        torch.float64: cast(int, ctypes.cast(double, ctypes.c_void_p).value),
    }


VML_SQRT: Final = _vml_sqrt_addresses()


def _fma_of(typingctx: Any, x: Any, y: Any, z: Any) -> Any:
    """``x * y + z`` rounded once."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return x(x, y, z), codegen


def _call_vml_of(typingctx: Any, function: Any, n: Any, source: Any, target: Any, mode: Any) -> Any:
    """Call the MKL VML function at address ``function`` with its Fortran interface
    (every argument by reference): ``n`` elements of ``source`` into ``target``."""
    from llvmlite import ir  # noqa: PLC0415

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        pointer = ir.IntType(8).as_pointer()
        kind = ir.FunctionType(ir.VoidType(), [pointer] * 4)
        callee = builder.inttoptr(args[0], kind.as_pointer())
        builder.call(callee, [builder.inttoptr(a, pointer) for a in args[1:]])
        return context.get_dummy_value()

    return numba.types.void(function, n, source, target, mode), codegen


_fma: Any = intrinsic(_fma_of)
_call_vml: Any = intrinsic(_call_vml_of)


@jit
def _gradient(g: Any, p: Any, maximize: bool, decay_on: bool, weight_decay: Any) -> Any:
    """The gradient as torch's step uses it: negated (``maximize``), then weight decay."""
    if maximize:
        g = -g
    if decay_on:
        g = _fma(p, weight_decay, g)
    return g


#: Keys the disk cache of the kernels on the sources they compile (see source_version).
_SOURCE_VERSION: Final = source_version(sys.modules[__name__])


@cache
def _kernel(switches: TorchSwitches, parallel: bool, dtype: torch.dtype) -> Any:
    """The kernel for one option combination and storage dtype, serial or parallel."""
    maximize, centered, momentum_on, decay_on, small_weight = switches
    kind = np.float32 if dtype == torch.float32 else np.float64
    size = np.dtype(kind).itemsize
    chunk, mode_value = CHUNK, VML_MODE
    cache_key = (_SOURCE_VERSION, tuple(switches), parallel, str(dtype))

    def kernel(addresses, sizes, chunks, parts, scalars, sqrt):  # type: ignore[no-untyped-def]
        if cache_key[0] < 0:  # never: cache_key is here to key the disk cache
            return
        alpha, weight, weight_minus_one, eps, momentum, weight_decay, neg_lr = (
            scalars[0], scalars[1], scalars[2], scalars[3], scalars[4], scalars[5], scalars[6],
        )  # fmt: skip
        for part in prange(parts.shape[0] - 1):  # parts: one per thread, balanced
            # One scratch array: the roots' arguments, then (MKL in place) the roots.
            roots = np.empty(chunk, kind)
            n = np.empty(1, np.int32)
            mode = np.empty(1, np.int64)
            mode[0] = mode_value
            for c in range(parts[part], parts[part + 1]):
                t = chunks[c, 0]
                first = chunks[c, 1]
                count = chunks[c, 2]
                p = column(addresses, t, 0, first, size, kind, count)
                g = column(addresses, t, 1, first, size, kind, count)
                v = column(addresses, t, 2, first, size, kind, count)
                b = column(addresses, t, 3, first, size, kind, count)
                a = column(addresses, t, 4, first, size, kind, count)
                # Indexed from 0 (the chunk's own arrays): LLVM vectorizes these loops.
                n[0] = count
                for i in range(count):
                    gi = _gradient(g[i], p[i], maximize, decay_on, weight_decay)
                    vi = _fma(weight * gi, gi, v[i] * alpha)
                    v[i] = vi
                    if centered:
                        ai = a[i]
                        if small_weight:
                            ai = _fma(weight, gi - ai, ai)
                        else:
                            ai = _fma(weight_minus_one, gi - ai, gi)
                        a[i] = ai
                        vi = _fma(-ai, ai, vi)
                    roots[i] = vi
                data = roots.ctypes.data
                _call_vml(sqrt, n.ctypes.data, data, data, mode.ctypes.data)
                for i in range(count):
                    # p[i] is still the old parameter: the same gradient as above.
                    gi = _gradient(g[i], p[i], maximize, decay_on, weight_decay)
                    d = roots[i] + eps
                    if momentum_on:
                        bi = b[i] * momentum + gi / d
                        b[i] = bi
                        p[i] = _fma(bi, neg_lr, p[i])
                    else:
                        p[i] = p[i] + (neg_lr * gi) / d

    return cached_kernel(kernel, cache_key, parallel=parallel)


def _scalars(hp: Hyperparameters, dtype: torch.dtype) -> np.ndarray[Any, Any]:
    """The options as the torch kernels see them: Python floats cast to the dtype."""
    kind = np.float32 if dtype == torch.float32 else np.float64
    weight = kind(1.0 - hp.beta)
    return np.array(
        [hp.beta, weight, weight - kind(1.0), hp.eps, hp.momentum, hp.weight_decay, -hp.lr],
        dtype=kind,
    )


class Launch:
    """One launch over fixed tensors (parameters and their state, the gradients' dtype and
    layout), whose gradients may move between calls: the tables are built once.

    ``members`` are (param, grad, [square_avg, momentum_buffer, grad_avg]): CPU tensors of
    one dtype of :data:`DTYPES`, each laid out like its gradient and state (checked by
    the caller, which also advances the step counters). Torch's order computes in the
    storage dtype: ``float32_arithmetic`` does not apply to it.
    """

    def __init__(
        self, members: Sequence[Member], hp: Hyperparameters, *, float32_arithmetic: bool = False
    ) -> None:
        if float32_arithmetic:
            raise ValueError("torch's order computes in the storage dtype: no float32_arithmetic")
        self._keep = [i for i, (p, _, _) in enumerate(members) if p.numel()]
        self.dtype = members[self._keep[0]][0].dtype if self._keep else torch.float32
        self.switches = TorchSwitches.of(hp)
        rows = []
        for i in self._keep:
            p, _, (v, b, a) = members[i]
            base = p.data_ptr()
            rows.append(
                (
                    base, 0, v.data_ptr(),
                    base if b is None else b.data_ptr(),
                    base if a is None else a.data_ptr(),
                )
            )  # fmt: skip
        self._addresses = np.array(rows, dtype=np.int64).reshape(-1, 5)
        self._sizes = np.array([members[i][0].numel() for i in self._keep], dtype=np.int64)
        self._chunks, self._parts = work_table(self._sizes, CHUNK)
        self.elements = int(self._sizes.sum())

    def __call__(
        self, grads: Sequence[torch.Tensor], hp: Hyperparameters, correction: float = 1.0
    ) -> None:
        """One step with ``grads`` (one per member given, empty ones included)."""
        if not self.elements:
            return
        assert VML_SQRT is not None  # matches() said so
        self._addresses[:, 1] = [grads[i].data_ptr() for i in self._keep]
        switches, dtype = self.switches, self.dtype
        args = (
            self._addresses, self._sizes, self._chunks, self._parts, _scalars(hp, dtype),
            VML_SQRT[dtype],
        )  # fmt: skip
        launch(lambda on: _kernel(switches, on, dtype), self.elements, *args)


def update(members: list[Member], hp: Hyperparameters) -> None:
    """One step over ``members`` in one launch (see :class:`Launch`)."""
    Launch(members, hp)([g for _, g, _ in members], hp)


def matches(hp: Hyperparameters, dtype: torch.dtype, device: torch.device | None = None) -> bool:
    """Whether this kernel reproduces this process's ``torch.optim.RMSprop`` (its CPU
    for-loop) for ``hp``'s option combination and ``dtype`` on the CPU: measured once,
    over sizes that end chunks and thread splits everywhere (see rmsprop._torch_probe)."""
    if VML_SQRT is None or dtype not in DTYPES:
        return False
    sizes = (1, 7, 33, 1027, CHUNK + 17, 3 * CHUNK + 1)
    key = ("cpu", TorchSwitches.of(hp), dtype)
    return _torch_probe.reproduces(key, update, hp, dtype, foreach=False, sizes=sizes)
