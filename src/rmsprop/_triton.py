"""The fused GPU kernel: the family rule in Triton, one launch per group of tensors.

One launch updates every tensor of a group (same options, device and dtypes). The
host builds a table of the tensors' addresses (parameter, gradient and the three
state buffers) and element counts, and a table of chunks (tensor, first element);
each program of the launch updates one chunk of :data:`CHUNK` elements in blocks
of :data:`BLOCK`, without masks where the block is full. Options are compile-time
constants, so each combination is its own kernel; the hyperparameter values are
read from a small float64 tensor on the device, so a new ``lr`` never recompiles.

Arithmetic is float64 by default: every value read is widened exactly, the rule is
evaluated with correctly rounded operations and no fused multiply-adds, and each
result is rounded once to its storage dtype (through float32 for bfloat16 and
float16, as PyTorch's own ``copy_`` from float64 rounds), so the results are
bit-identical to the float64 ``torch._foreach_*`` path of :mod:`rmsprop.torch`.
With ``float32_arithmetic`` and float32 data, the kernel computes in float32
with correctly rounded division and square root.

Triton cannot compile :func:`rmsprop._rule.family_update` as it is; the kernel
calls :mod:`rmsprop._triton_rule`, generated from the rule's syntax tree by
:mod:`rmsprop._rule_to_triton` (a test checks that the committed file is what the
generator writes, others compare the kernel with the foreach path, bit for bit,
for every option combination).

bfloat16 data are read and written as 16-bit integers: a bfloat16 is the upper
half of a float32, and writing rounds to nearest even by integer arithmetic
(Triton's interpreter truncates where the compiled conversion rounds; this way
both round alike). Importing this module imports Triton.
"""

import collections
import contextlib
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import torch
import triton
import triton.language as tl
from triton.compiler import CompiledKernel

from rmsprop import _blockwise, _kinds, _torch_probe
from rmsprop._kinds import Member, float32_work, launch_kinds
from rmsprop._options import Hyperparameters
from rmsprop._triton_codes import (
    decode8,
    load,
    mix,
    random_start,
    read,
    write,
    write_state,
    write_stochastic,
)
from rmsprop._triton_rule import div_rn, family_update, sqrt_rn

#: Elements per program (one row of the chunk table).
CHUNK: Final = 1 << 13
#: Elements per block within a chunk. Chunk, block and warps were measured on an H200 at
#: 10^8 elements (benchmarks/gpu_check.py, its sweep): 8,192, 512 and 4 moved 4.00 TB/s in
#: float32 and 3.66 TB/s for bfloat16 with float32 state; 16,384, 1,024 and 4: 3.77 and 2.41.
BLOCK: Final = 1 << 9
#: Warps per program.
WARPS: Final = 4
#: With 8-bit state a program block is one block of codes (its scale is the block's
#: largest value, a reduction), and one warp takes it, 8 elements a thread: 16-byte
#: loads of float32 data (compiled for sm_80 and sm_90a by test_triton; its speed
#: is not measured on a GPU yet).
BLOCKWISE_BLOCK: Final = _blockwise.BLOCK
BLOCKWISE_WARPS: Final = 1
#: The storage dtypes the kernel reads and writes.
DTYPES: Final = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
#: What a launch computes (the kernel's ``ORDER``): the family rule, evaluated in the
#: work dtype and rounded once (``FAMILY``); or ``torch.optim.RMSprop``'s own sequence
#: of operations on CUDA, rounded after each (``TORCH``; its foreach and for-loop
#: implementations give the same numbers there, measured on an H200).
FAMILY, TORCH = 0, 1
#: The storage dtypes of torch's order (parameters, gradients and state alike).
TORCH_ORDER_DTYPES: Final = (torch.float32, torch.float64)
#: Addresses are checked to be multiples of this before the kernel is told so.
ALIGNMENT: Final = 16

_STORAGE: Final = {
    torch.float32: tl.float32,
    torch.float64: tl.float64,
    torch.bfloat16: tl.uint16,  # the upper half of a float32, converted by hand
    torch.float16: tl.float16,
    torch.uint8: tl.uint8,  # 8-bit blockwise codes (rmsprop._blockwise)
}


@triton.jit
def _mul_add(x, y, z, FUSED: tl.constexpr):  # type: ignore[no-untyped-def]
    """``x * y + z``: rounded once (as CUDA compiles it, a fused multiply-add) or twice."""
    if FUSED:
        r = tl.fma(x, y, z)
    else:
        r = x * y + z
    return r


@triton.jit
def _torch_rule(  # type: ignore[no-untyped-def]
    p, g, v, b, a,
    neg_lr, alpha, weight, eps, momentum, weight_decay, one_minus_weight,
    MAXIMIZE: tl.constexpr, CENTERED: tl.constexpr, MOMENTUM: tl.constexpr,
    DECAY: tl.constexpr, SMALL_WEIGHT: tl.constexpr, FUSED: tl.constexpr,
):  # fmt: skip
    """``torch.optim.RMSprop``'s step on CUDA, operation for operation, each result
    rounded to the storage dtype (``weight`` is ``1 - alpha``). Its ``addcmul`` rounds
    ``t1 * t2`` first (``self + value * (t1 * t2)``), and CUDA contracts each
    ``x + s * y`` into a fused multiply-add (``FUSED``; without, no combination
    matches: benchmarks/gpu_torch_exact.py). rmsprop._torch_probe confirms the
    match before use."""
    if MAXIMIZE:
        g = -g
    if DECAY:
        g = _mul_add(weight_decay, p, g, FUSED)  # grad.add(param, alpha=weight_decay)
    v = _mul_add(weight, g * g, v * alpha, FUSED)  # mul_(alpha), addcmul_(g, g, value=weight)
    variance = v
    if CENTERED:
        diff = g - a  # lerp_(grad, weight): ATen's two formulas
        if SMALL_WEIGHT:
            a = _mul_add(weight, diff, a, FUSED)
        else:
            a = _mul_add(-diff, one_minus_weight, g, FUSED)
        variance = v - a * a  # addcmul(grad_avg, grad_avg, value=-1)
    den = sqrt_rn(variance) + eps  # sqrt, add_(eps)
    if MOMENTUM:
        b = b * momentum + div_rn(g, den)  # mul_(momentum), addcdiv_(grad, avg)
        p = _mul_add(neg_lr, b, p, FUSED)  # add_(buf, alpha=-lr)
    else:
        p = _mul_add(neg_lr, div_rn(g, den), p, FUSED)  # addcdiv_(grad, avg, value=-lr)
    return p, v, b, a


@triton.jit
def _block(  # type: ignore[no-untyped-def]
    pp, gp, vp, bp, ap, offsets, mask, h0, h1, h2, h3, h4, h5, h6, step, stream, seed,
    svp, sbp, sap, quant,
    WORK: tl.constexpr, MASKED: tl.constexpr,
    MAXIMIZE: tl.constexpr, CENTERED: tl.constexpr, EPS_IN_SQRT: tl.constexpr,
    NESTEROV: tl.constexpr, LR_IN_MOMENTUM: tl.constexpr, DECOUPLED: tl.constexpr,
    MOMENTUM: tl.constexpr, DECAY: tl.constexpr, BIAS_CORRECTION: tl.constexpr,
    ORDER: tl.constexpr, SMALL_WEIGHT: tl.constexpr, FUSED: tl.constexpr,
    STOCHASTIC: tl.constexpr, BLOCKWISE: tl.constexpr, ROUND_PARAMS: tl.constexpr,
    ROUND_STATE: tl.constexpr,
):  # fmt: skip
    """Read one block, apply the rule (or torch's order of it), write the results back.
    ``h0`` to ``h6`` are the hyperparameter values in float64 (see :func:`_hyper`);
    ``STOCHASTIC``: the random sequence starts at ``step`` (rmsprop._random), and with
    ``ROUND_STATE`` the state is bfloat16 rounded stochastically with the element's
    draw; ``BLOCKWISE``: the state is 8-bit codes (rmsprop._blockwise), this block is
    block ``quant`` of their scales at ``svp``, ``sbp``, ``sap``, and rounded
    stochastically; ``ROUND_PARAMS``: bfloat16 parameters rounded stochastically with
    16 bits of their own Weyl sequence (rmsprop._random.parameter_bits)."""
    p = read(pp, offsets, mask, MASKED, WORK)
    g = read(gp, offsets, mask, MASKED, WORK)
    if BLOCKWISE:  # the codes' constants: rmsprop._blockwise.UNSIGNED and SIGNED
        v = decode8(load(vp, offsets, mask, MASKED), 96, 0xFF, 2.0**-33, False).to(WORK)
        v = v * tl.load(svp + quant).to(WORK)
    else:
        v = read(vp, offsets, mask, MASKED, WORK)
    b = v
    a = v
    if MOMENTUM:
        if BLOCKWISE:
            b = decode8(load(bp, offsets, mask, MASKED), 112, 0x7F, 2.0**-17, True).to(WORK)
            b = b * tl.load(sbp + quant).to(WORK)
        else:
            b = read(bp, offsets, mask, MASKED, WORK)
    if CENTERED:
        if BLOCKWISE:
            a = decode8(load(ap, offsets, mask, MASKED), 112, 0x7F, 2.0**-17, True).to(WORK)
            a = a * tl.load(sap + quant).to(WORK)
        else:
            a = read(ap, offsets, mask, MASKED, WORK)
    if ORDER == 0:  # the rule generated from rmsprop._rule (rmsprop._triton_rule)
        p, v, b, a = family_update(
            p, g, v, b, a, h0, h1, h2, h3, h4, h5, WORK,
            MAXIMIZE, CENTERED, EPS_IN_SQRT, NESTEROV, LR_IN_MOMENTUM, DECOUPLED, MOMENTUM,
            DECAY, BIAS_CORRECTION,
        )  # fmt: skip
    else:  # TORCH: torch's kernels take Python floats rounded to the storage dtype
        p, v, b, a = _torch_rule(
            p, g, v, b, a,
            h0.to(WORK), h1.to(WORK), h2.to(WORK), h3.to(WORK), h4.to(WORK), h5.to(WORK),
            h6.to(WORK), MAXIMIZE, CENTERED, MOMENTUM, DECAY, SMALL_WEIGHT, FUSED,
        )  # fmt: skip
    if ROUND_PARAMS:  # rmsprop._random.parameter_bits, from ``step``, the sequence's start
        start = (mix(step) & 0xFFFFF).to(tl.uint32)
        weyl = (start + offsets.to(tl.uint32) * 0x3C6EF) & 0xFFFFF
        write_stochastic(pp, offsets, mask, p, weyl >> 4, MASKED)
    else:
        write(pp, offsets, mask, p, MASKED)
    write_state(
        vp, bp, ap, svp, sbp, sap, quant, offsets, mask, v, b, a, step, MASKED, MOMENTUM,
        CENTERED, STOCHASTIC, BLOCKWISE, ROUND_STATE,
    )  # fmt: skip


@triton.jit
def _family_kernel(  # type: ignore[no-untyped-def]
    addresses, sizes, chunks, hyper,
    P: tl.constexpr, G: tl.constexpr, S: tl.constexpr, WORK: tl.constexpr,
    MAXIMIZE: tl.constexpr, CENTERED: tl.constexpr, EPS_IN_SQRT: tl.constexpr,
    NESTEROV: tl.constexpr, LR_IN_MOMENTUM: tl.constexpr, DECOUPLED: tl.constexpr,
    MOMENTUM: tl.constexpr, DECAY: tl.constexpr, BIAS_CORRECTION: tl.constexpr,
    ORDER: tl.constexpr, SMALL_WEIGHT: tl.constexpr, FUSED: tl.constexpr,
    ALIGNED: tl.constexpr, CHUNK_SIZE: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    STOCHASTIC: tl.constexpr = False, BLOCKWISE: tl.constexpr = False,
    ROUND_PARAMS: tl.constexpr = False, ROUND_STATE: tl.constexpr = True,
):  # fmt: skip
    """One program per chunk: ``chunks[2k], chunks[2k + 1]`` are its tensor and first element.

    ``addresses[5t:5t + 5]`` are tensor t's parameter, gradient, square average,
    momentum buffer and gradient average (unused ones repeat the parameter's);
    ``sizes[t]`` its element count; ``hyper`` the hyperparameter values in float64
    (see :func:`_hyper`). ``STOCHASTIC``: rows of 8, whose last three are the address
    of the tensor's float32 step counter (this step is its next), its random stream
    and the seed; the state is bfloat16 rounded stochastically (unless not
    ``ROUND_STATE``). ``BLOCKWISE`` (with ``STOCHASTIC``): rows of 11, whose last three
    are the addresses of the float32 scales of the tensor's 8-bit codes
    (rmsprop._blockwise), and BLOCK_SIZE is its block. ``ROUND_PARAMS`` (with
    ``STOCHASTIC``): bfloat16 parameters rounded stochastically too.
    """
    ROW: tl.constexpr = 11 if BLOCKWISE else (8 if STOCHASTIC else 5)
    chunk = tl.program_id(0).to(tl.int64)
    tensor = tl.load(chunks + 2 * chunk)
    first = tl.load(chunks + 2 * chunk + 1)
    size = tl.load(sizes + tensor)
    row = addresses + ROW * tensor
    step = 0
    stream = 0
    seed = 0
    if STOCHASTIC:  # where this tensor's random sequence starts, in ``step``
        counter = tl.load(row + 5).to(tl.pointer_type(tl.float32))
        this = (tl.load(counter).to(tl.int64) + 1).to(tl.uint64)
        stream = tl.load(row + 6).to(tl.uint64)
        seed = tl.load(row + 7).to(tl.uint64)
        step = random_start(seed, this, stream)
    pp = tl.load(row).to(tl.pointer_type(P))
    gp = tl.load(row + 1).to(tl.pointer_type(G))
    vp = tl.load(row + 2).to(tl.pointer_type(S))
    bp = tl.load(row + 3).to(tl.pointer_type(S))
    ap = tl.load(row + 4).to(tl.pointer_type(S))
    svp = tl.load(row).to(tl.pointer_type(tl.float32))
    sbp = svp
    sap = svp
    if BLOCKWISE:
        svp = tl.load(row + 8).to(tl.pointer_type(tl.float32))
        sbp = tl.load(row + 9).to(tl.pointer_type(tl.float32))
        sap = tl.load(row + 10).to(tl.pointer_type(tl.float32))
    if ALIGNED:
        pp = tl.multiple_of(pp, 16)
        gp = tl.multiple_of(gp, 16)
        vp = tl.multiple_of(vp, 16)
        bp = tl.multiple_of(bp, 16)
        ap = tl.multiple_of(ap, 16)
    h0 = tl.load(hyper)
    h1 = tl.load(hyper + 1)
    h2 = tl.load(hyper + 2)
    h3 = tl.load(hyper + 3)
    h4 = tl.load(hyper + 4)
    h5 = tl.load(hyper + 5)
    h6 = tl.load(hyper + 6)
    for start in tl.range(0, CHUNK_SIZE, BLOCK_SIZE):
        base = first + start
        # Chunks start at multiples of CHUNK_SIZE, itself a multiple of BLOCK_SIZE.
        offsets = tl.max_contiguous(
            tl.multiple_of(base + tl.arange(0, BLOCK_SIZE), BLOCK_SIZE), BLOCK_SIZE
        )
        quant = base // BLOCK_SIZE  # the block's scale, for 8-bit codes
        if base + BLOCK_SIZE <= size:
            _block(
                pp, gp, vp, bp, ap, offsets, None, h0, h1, h2, h3, h4, h5, h6, step, stream,
                seed, svp, sbp, sap, quant, WORK, False, MAXIMIZE, CENTERED, EPS_IN_SQRT,
                NESTEROV, LR_IN_MOMENTUM, DECOUPLED, MOMENTUM, DECAY, BIAS_CORRECTION, ORDER,
                SMALL_WEIGHT, FUSED, STOCHASTIC, BLOCKWISE, ROUND_PARAMS, ROUND_STATE,
            )  # fmt: skip
        elif base < size:
            _block(
                pp, gp, vp, bp, ap, offsets, offsets < size, h0, h1, h2, h3, h4, h5, h6, step,
                stream, seed, svp, sbp, sap, quant, WORK, True, MAXIMIZE, CENTERED, EPS_IN_SQRT,
                NESTEROV, LR_IN_MOMENTUM, DECOUPLED, MOMENTUM, DECAY, BIAS_CORRECTION, ORDER,
                SMALL_WEIGHT, FUSED, STOCHASTIC, BLOCKWISE, ROUND_PARAMS, ROUND_STATE,
            )  # fmt: skip


_KEPT: Final = 16
_launches: "collections.OrderedDict[tuple[Any, ...], Launch]" = collections.OrderedDict()
_hyper_cache: "collections.OrderedDict[tuple[Any, ...], torch.Tensor]" = collections.OrderedDict()
_cache_lock = threading.Lock()


def _remember(cache: "collections.OrderedDict[Any, Any]", key: Any, value: Any) -> None:
    with _cache_lock:
        cache[key] = value
        while len(cache) > _KEPT:
            cache.popitem(last=False)


def _upload(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU tensor to ``device`` without making the host wait for the device."""
    if device.type == "cuda":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def _options(hp: Hyperparameters) -> tuple[bool, ...]:
    """The options that select a kernel, in the order of its signature."""
    return tuple(hp.switches)


class Launch:
    """One launch of the kernel over fixed tensors, whose gradients may move between calls.

    Built once for a list of members (the parameters, their state buffers and, for
    dtype and layout, one gradient each; members without elements are left out of
    the tables); called with one gradient per member and the hyperparameters,
    whose options must be those it was built for. The size and chunk tables go to
    the device once; the address table again only when a gradient's address changes.
    """

    def __init__(
        self,
        members: Sequence[Member],
        hp: Hyperparameters,
        *,
        float32_arithmetic: bool = False,
        order: int = FAMILY,
        fused: bool = True,
        chunk: int = CHUNK,
        block: int = BLOCK,
        warps: int = WARPS,
        stochastic: tuple[Sequence[torch.Tensor], Sequence[int], int] | None = None,
        scales: Sequence[Sequence[torch.Tensor | None]] | None = None,
        round_params: bool = False,
        round_state: bool = True,
    ) -> None:
        self._keep = [i for i, (p, _, _) in enumerate(members) if p.numel()]
        p, g, buffers = members[self._keep[0] if self._keep else 0]
        state_dtype = buffers[0].dtype
        self.device = p.device
        self._switches = _options(hp)
        self._rows: list[int] = []  # per member: p, g (0 until called), v, b, a
        sizes: list[int] = []
        pointers: list[int] = []
        for i in self._keep:
            row = _row(members[i], i, stochastic, scales)
            pointers += row[:5]
            self._rows += row
            sizes.append(members[i][0].numel())
        self._blockwise = scales is not None
        self._width = 11 if self._blockwise else (5 if stochastic is None else 8)
        self._stochastic = stochastic is not None
        kinds = launch_kinds(
            p.dtype, g.dtype, state_dtype, drawn=self._stochastic, scales=scales,
            round_params=round_params, round_state=round_state,
        )  # fmt: skip
        self._rounding = (kinds[0] == _kinds.STOCHASTIC, kinds[2] == _kinds.STOCHASTIC)
        if self._blockwise:  # one program block per block of codes
            block, warps = BLOCKWISE_BLOCK, BLOCKWISE_WARPS
        self._aligned = all(address % ALIGNMENT == 0 for address in pointers)
        counts = torch.tensor(sizes, dtype=torch.int64).add_(chunk - 1).floor_divide_(chunk)
        owner = torch.repeat_interleave(torch.arange(len(sizes)), counts)
        firsts = torch.cumsum(counts, 0) - counts
        starts = (torch.arange(owner.numel()) - firsts[owner]) * chunk
        chunks = torch.stack([owner, starts], dim=1).reshape(-1)
        static = _upload(torch.cat([torch.tensor(sizes, dtype=torch.int64), chunks]), self.device)
        self._sizes, self._chunks = static[: len(sizes)], static[len(sizes) :]
        self.grid = (owner.numel(), 1, 1)
        float32 = float32_work(kinds, float32_arithmetic)
        if order == FAMILY:
            work = tl.float32 if float32 else tl.float64
        else:  # torch's order computes in the storage dtype (one of TORCH_ORDER_DTYPES)
            work = _STORAGE[p.dtype]
        self._dtypes = (_STORAGE[p.dtype], _STORAGE[g.dtype], _STORAGE[state_dtype], work)
        small_weight = order != FAMILY and abs(1.0 - hp.beta) < 0.5
        self._order = (order, small_weight, fused and order != FAMILY)
        self._sizing = (chunk, block)
        self._warps = warps
        self._addresses: collections.OrderedDict[tuple[int, ...], tuple[torch.Tensor, bool]] = (
            collections.OrderedDict()
        )

    def __call__(
        self, grads: Sequence[torch.Tensor], hp: Hyperparameters, correction: float = 1.0
    ) -> None:
        """One step: ``grads[i]`` is the gradient of member i, of the dtype and layout built
        for; ``correction`` the bias correction (see :meth:`Hyperparameters.correction`)."""
        if not self._keep:
            return
        pointers = tuple(grads[i].data_ptr() for i in self._keep)
        found = self._addresses.get(pointers)
        if found is None:
            rows = list(self._rows)
            rows[1 :: self._width] = pointers
            aligned = self._aligned and all(address % ALIGNMENT == 0 for address in pointers)
            found = (_upload(torch.tensor(rows, dtype=torch.int64), self.device), aligned)
            _remember(self._addresses, pointers, found)  # a few layouts of the gradients
        addresses, aligned = found
        constants = (
            *self._dtypes, *self._switches, *self._order, aligned, *self._sizing, self._stochastic,
            self._blockwise, *self._rounding,
        )  # fmt: skip
        hyper = _hyper(hp, correction, self.device, self._order[0], self._dtypes[0])
        args = (addresses, self._sizes, self._chunks, hyper, *constants)
        with (
            torch.cuda.device(self.device)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        ):
            key = (self.device, self._warps, *constants)
            compiled = _compiled.get(key) if FAST_LAUNCH else None
            if compiled is not None and _launch_directly(compiled, self.grid, args):
                return
            compiled = _family_kernel[self.grid](
                *args, num_warps=self._warps, enable_fp_fusion=False
            )
            if isinstance(compiled, CompiledKernel):  # the interpreter returns none
                _remember(_compiled, key, compiled)


def _row(
    member: Member,
    i: int,
    stochastic: tuple[Sequence[torch.Tensor], Sequence[int], int] | None,
    scales: Sequence[Sequence[torch.Tensor | None]] | None,
) -> list[int]:
    """Member ``i``'s row of the address table: parameter, gradient (0 until called),
    state buffers (unused ones the parameter's); then its step counter, stream and the
    seed where the state is rounded stochastically, and its scales for 8-bit codes."""
    p, _, (v, b, a) = member
    base = p.data_ptr()
    row = [
        base, 0, v.data_ptr(), base if b is None else b.data_ptr(),
        base if a is None else a.data_ptr(),
    ]  # fmt: skip
    if stochastic is not None:
        counters, streams, seed = stochastic
        row += [counters[i].data_ptr(), streams[i], seed]
    if scales is not None:
        square = scales[i][0]
        if square is None:
            raise TypeError("8-bit blockwise state needs the square average's scales")
        row += [(square if s is None else s).data_ptr() for s in scales[i]]
    return row


def _hyper(
    hp: Hyperparameters, correction: float, device: torch.device, order: int, storage: Any
) -> torch.Tensor:
    """The hyperparameter values as a float64 tensor on ``device`` (see the kernel).

    For torch's order: -lr, alpha, 1 - alpha, eps, momentum, weight_decay (each
    rounded to the storage dtype in the kernel, as torch's kernels take Python
    floats), and ``1 - (1 - alpha)`` computed in the storage dtype (``lerp_``'s).
    """
    if order == FAMILY:  # the values of rmsprop._triton_rule.family_update, in its order
        values = (hp.lr, hp.beta, hp.eps, hp.momentum, hp.weight_decay, correction, 0.0)
    else:
        weight = 1.0 - hp.beta
        if storage == tl.float32:  # in float32, as the lerp_ kernel computes it
            one_minus_weight = float(np.float32(1.0) - np.float32(weight))
        else:
            one_minus_weight = 1.0 - weight
        values = (
            -hp.lr, hp.beta, weight, hp.eps, hp.momentum, hp.weight_decay, one_minus_weight,
        )  # fmt: skip
    key = (device, order, *values)
    found = _hyper_cache.get(key)
    if found is None:
        found = _upload(torch.tensor(values, dtype=torch.float64), device)
        _remember(_hyper_cache, key, found)
    return found


def update(
    members: Sequence[Member],
    hp: Hyperparameters,
    *,
    float32_arithmetic: bool = False,
    correction: float = 1.0,
    order: int = FAMILY,
    fused: bool = True,
    chunk: int = CHUNK,
    block: int = BLOCK,
    warps: int = WARPS,
) -> None:
    """One family step over ``members`` in one launch, in place (``order``: see
    :data:`FAMILY`; torch's order takes members of one dtype of TORCH_ORDER_DTYPES).

    Every member holds tensors of the parameter's shape, dense and of one layout
    (the caller checks: ``rmsprop.torch._backends.kernel_can_update``), and shares the first
    one's device and dtypes (parameter, gradient, state); buffers that the options
    use are given. ``chunk`` and ``block`` (powers of two, ``block`` dividing
    ``chunk``) and ``warps`` set the work of one program; tests under Triton's
    interpreter use large blocks. The :class:`Launch` is kept for the next call
    over the same tensors.
    """
    members = [m for m in members if m[0].numel()]
    if not members:
        return
    p, g, buffers = members[0]
    fixed = [t.data_ptr() if t is not None else 0 for p, _, bs in members for t in (p, *bs)]
    state_dtype = next(b.dtype for b in buffers if b is not None)
    key = (
        p.device, p.dtype, g.dtype, state_dtype, float32_arithmetic, order, fused, chunk,
        block, warps, _options(hp), abs(1.0 - hp.beta) < 0.5, *fixed,
        *(m[0].numel() for m in members),
    )  # fmt: skip
    launch = _launches.get(key)
    if launch is None:
        launch = Launch(
            members, hp, float32_arithmetic=float32_arithmetic, order=order, fused=fused,
            chunk=chunk, block=block, warps=warps,
        )  # fmt: skip
        _remember(_launches, key, launch)
    launch([g for _, g, _ in members], hp, correction)


def _launch_directly(compiled: Any, grid: tuple[int, int, int], args: tuple[Any, ...]) -> bool:
    """Launch a kernel compiled before, without Triton's JIT; False if this Triton refuses.

    The compiled kernel's launcher is not a public interface of Triton: where it
    fails (before launching: it prepares its arguments first), direct launches
    are turned off for the process with a warning and the JIT launches instead.
    """
    global FAST_LAUNCH  # noqa: PLW0603
    try:
        compiled[grid](*args)
    except (TypeError, IndexError, ValueError, AttributeError, KeyError) as error:
        FAST_LAUNCH = False
        warnings.warn(
            f"rmsprop: launching compiled Triton kernels directly failed ({error!r}); "
            "launching through Triton's JIT from now on",
            RuntimeWarning,
            stacklevel=4,
        )
        return False
    return True


#: Launch compiled kernels directly after their first use, skipping the JIT's argument
#: binding and cache lookup (host time per launch measured by benchmarks/gpu_check.py).
FAST_LAUNCH = True
_compiled: "collections.OrderedDict[tuple[Any, ...], Any]" = collections.OrderedDict()


def matches_torch(hp: Hyperparameters, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether torch's order reproduces this process's ``torch.optim.RMSprop`` on
    ``device`` for ``hp``'s option combination and ``dtype`` (measured once: see
    rmsprop._torch_probe)."""
    if dtype not in TORCH_ORDER_DTYPES:
        return False

    def run(members: list[Member], hp: Hyperparameters) -> None:
        update(members, hp, order=TORCH)

    key = ("triton", str(device), _torch_probe.TorchSwitches.of(hp), dtype)
    return _torch_probe.reproduces(key, run, hp, dtype, device=device)
