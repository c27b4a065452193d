"""Low-bit state (``state_bits`` 16 and 8) and bfloat16 parameters rounded stochastically
(``stochastic_rounding``) where no fused kernel runs, in torch operations.

The fused kernels write bfloat16 state rounded stochastically and 8-bit blockwise
codes on the CPU (Numba) and on CUDA (Triton). Where neither runs (Apple's MPS, CUDA
without Triton, the kernels turned off or failed), :class:`Launch` takes the same
launch and computes the same step with tensor operations on the tensors' own device:
the rule is :func:`rmsprop._rule.family_update` itself, on each parameter's elements in
memory order, with the kernels' work dtype and scalars; the random bits are
:mod:`rmsprop._random`'s (SplitMix64 and the Weyl sequences, in int64 operations that
wrap, shifted logically by masking) and the codes :mod:`rmsprop._blockwise`'s, block by
block, rounded as the kernels round. On the CPU it writes the kernels' bytes, bit for
bit (tested); elsewhere, what the device's division and square root give (CUDA's are
IEEE's; MPS computes in float32 only, its arithmetic Metal's).

It is not fused: each element passes through a few dozen tensor operations, 15 to 23
times the kernels' time on the CPU (``benchmarks/bench_lowbit_operations.py``), and
what it holds at a time is bounded by slicing each parameter into :data:`SLICE`
elements (at most about 130 bytes each, measured).
"""

import functools
from collections.abc import Sequence
from typing import Any, Final, cast

import torch

from rmsprop import _blockwise, _random
from rmsprop._interrupt import write_all
from rmsprop._kinds import STOCHASTIC, Member, float32_work, launch_kinds
from rmsprop._options import Hyperparameters, converted
from rmsprop._rule import State, family_update
from rmsprop.torch._foreach import exact_sqrt
from rmsprop.torch._lowbit import memory_order

#: Elements of a parameter stepped at a time: a multiple of the 8-bit block.
SLICE: Final = 1 << 18


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 of the same bits."""
    value &= _random.MASK
    return value - (1 << 64) if value >> 63 else value


def _shift(z: torch.Tensor, bits: int) -> torch.Tensor:
    """``z >> bits`` on the 64-bit patterns of int64 ``z``, logically (zeros come in)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix(z: torch.Tensor) -> torch.Tensor:
    """:func:`rmsprop._random.mix` on int64 tensors (their products wrap at 2^64)."""
    z = (z ^ _shift(z, 30)) * _signed(_random.MIX1)
    z = (z ^ _shift(z, 27)) * _signed(_random.MIX2)
    return z ^ _shift(z, 31)


def start(seed: int, step: torch.Tensor, stream: int) -> torch.Tensor:
    """:func:`rmsprop._random.start` of a seed, an int64 0-d ``step`` and a stream."""
    seeded = _signed(_random.mix((seed + _random.GAMMA) & _random.MASK))
    z = mix(step * _signed(_random.GAMMA) + seeded)
    return mix(z + _signed(stream * _random.GAMMA))


def draws(begin: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """:func:`rmsprop._random.draw` of elements ``j`` (int64) from ``begin``."""
    return mix(begin + (j + 1) * _signed(_random.GAMMA))


def weyl(begin: torch.Tensor, j: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`rmsprop._random.weyl`: 20 random bits of elements ``j`` of buffer ``k``."""
    offset = (begin >> (20 * k)) & _random.WEYL_MASK  # bits below 60: no sign comes in
    return (offset + (j & 0xFFFFFFFF) * _random.WEYL[k]) & _random.WEYL_MASK


def stochastic_bfloat16(x: torch.Tensor, random: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to float32, then to bfloat16 with 16 ``random`` bits
    (:func:`rmsprop._random.round_bfloat16`): as int16 bit patterns."""
    bits = x.to(torch.float32).view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return _int16(torch.where(nan, (bits >> 16) | 0x0040, (bits + random) >> 16))


def bfloat16_bits(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to float32, then to bfloat16 to nearest even, as the kernels round
    it (NaN as 0x7FC0, where torch's vectorized conversion may keep a sign): int16
    bit patterns."""
    bits = x.to(torch.float32).view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = torch.where(nan, 0x7FC0, (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)
    return _int16(rounded)


def _int16(half: torch.Tensor) -> torch.Tensor:
    """16-bit patterns held in int64 (0 to 65535) as int16."""
    return torch.where(half >= 1 << 15, half - (1 << 16), half).to(torch.int16)


def block_exponents(largest: torch.Tensor) -> torch.Tensor:
    """:func:`rmsprop._blockwise.block_exponent` of float32 or float64 magnitudes, from
    their bits (int32 results)."""
    if largest.dtype == torch.float64:
        bits = largest.view(torch.int64)
        field, over = (bits >> 52) & 0x7FF, (bits & ((1 << 52) - 1)) > (3 << 50)
        exponent = field - 1023 + over.to(torch.int64)
    else:
        bits32 = largest.view(torch.int32)
        field32, over32 = (bits32 >> 23) & 0xFF, (bits32 & 0x7FFFFF) > (3 << 21)
        exponent = (field32 - 127 + over32.to(torch.int32)).to(torch.int64)
    return exponent.clamp(_blockwise.T_MIN, _blockwise.T_MAX).to(torch.int32)


def power(exponent: torch.Tensor) -> torch.Tensor:
    """``2**exponent`` as float32, for int32 exponents of float32's normal range."""
    return ((exponent + 127) << 23).view(torch.float32)


def encode(
    x: torch.Tensor, code: _blockwise.Code, random: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes (uint8) and block scales (float32) of ``x`` (the work dtype, from the
    start of a block), rounded with 20 ``random`` bits per element as the kernels'
    ``encode8`` rounds (:func:`rmsprop._blockwise.encode`)."""
    n, block = x.numel(), _blockwise.BLOCK
    magnitude = x.abs()
    finite = magnitude <= _blockwise.LIMIT  # False for NaN
    kept = torch.where(finite, magnitude, 0.0)
    padded = torch.nn.functional.pad(kept, (0, -n % block))
    exponent = block_exponents(padded.view(-1, block).amax(dim=1))
    inverse = power(-exponent).to(x.dtype).repeat_interleave(block)[:n]
    u = (kept * inverse).to(torch.float32)
    smallest = 2.0**-code.smallest
    biased = u.view(torch.int32) - (code.bias << 23)
    scaled = (u.clamp_max(smallest) * 2.0 ** (code.smallest + 23)).to(torch.int32)
    codes = (torch.where(u >= smallest, biased, scaled) + random.to(torch.int32)) >> 20
    codes = torch.where(finite, codes, code.nan)
    if code.signed:
        codes = codes | torch.where(x < 0, 0x80, 0).to(torch.int32)
    return codes.to(torch.uint8), power(exponent)


def decode(codes: torch.Tensor, scales: torch.Tensor, code: _blockwise.Code, work: Any) -> Any:
    """The values of ``codes`` (from the start of a block) with their blocks' ``scales``,
    in ``work``, exactly as the kernels decode them."""
    table = torch.from_numpy(_blockwise.table(code)).to(codes.device)
    factor = scales.to(work).repeat_interleave(_blockwise.BLOCK)[: codes.numel()]
    return table[codes.to(torch.int64)].to(work) * factor


class Launch:
    """:class:`rmsprop._kernels.Launch` for low-bit state, in torch operations on any
    device: members ``(param, grad, [square_avg, momentum_buffer, grad_avg])`` dense and
    laid out alike (as :func:`rmsprop.torch._backends.kernel_can_update` checks), with
    ``stochastic=(counters, streams, seed)`` and, for 8-bit codes, ``scales``; with
    ``round_params``, bfloat16 parameters rounded stochastically too (and with
    ``round_state=False`` only they: any state, rounded to nearest)."""

    def __init__(
        self,
        members: Sequence[Member],
        hp: Hyperparameters,
        *,
        float32_arithmetic: bool = False,
        stochastic: tuple[Sequence[Any], Sequence[int], int] | None = None,
        scales: Sequence[Sequence[Any]] | None = None,
        round_params: bool = False,
        round_state: bool = True,
    ) -> None:
        if stochastic is None:
            raise TypeError("the torch-operations launch writes what is rounded stochastically")
        self._members = list(members)
        self._counters, self._streams, self._seed = stochastic
        self._scales = scales
        p, g, buffers = self._members[0]
        kinds = launch_kinds(
            p.dtype, g.dtype, buffers[0].dtype, drawn=True, scales=scales,
            round_params=round_params, round_state=round_state,
        )  # fmt: skip
        self._round = (kinds[0] == STOCHASTIC, kinds[2] == STOCHASTIC)  # parameters, state
        narrow = float32_work(kinds, float32_arithmetic)
        # MPS has no float64: there the step computes in float32.
        self._work = torch.float32 if narrow or p.device.type == "mps" else torch.float64

    def __call__(self, grads: Sequence[Any], hp: Hyperparameters, correction: float = 1.0) -> None:
        work = self._work
        options: Any = hp
        factor: Any = correction
        if work == torch.float32:  # float32 0-d tensors: float32 scalars, as the kernel's
            options, factor = converted(hp, correction, functools.partial(torch.tensor, dtype=work))
        with torch.no_grad():
            for i, ((p, _, buffers), g) in enumerate(zip(self._members, grads, strict=True)):
                if not p.numel():
                    continue
                step = self._counters[i].detach().to(torch.int64) + 1
                begin = start(self._seed, step, self._streams[i])
                scales = None if self._scales is None else self._scales[i]
                views = [memory_order(t.detach()) if t is not None else None
                         for t in (p, g, *buffers)]  # fmt: skip
                # The buffers the options use: a kernel leaves any other untouched.
                used = (True, bool(hp.momentum), hp.centered)
                for k, on in enumerate(used):
                    views[2 + k] = views[2 + k] if on else None
                for first in range(0, p.numel(), SLICE):
                    self._slice(views, scales, first, begin, options, factor)

    def _slice(
        self,
        views: list[torch.Tensor | None],
        scales: Sequence[Any] | None,
        first: int,
        begin: torch.Tensor,
        options: Any,
        correction: Any,
    ) -> None:
        """Elements ``first`` to ``first + SLICE`` of a parameter (a multiple of the
        block: its blocks are whole, but for the parameter's last)."""
        work, block = self._work, _blockwise.BLOCK
        p, g, *buffers = (None if t is None else t[first : first + SLICE] for t in views)
        assert p is not None and g is not None
        codes = [_blockwise.CODES[key] for key in ("square_avg", "momentum_buffer", "grad_avg")]
        blocks = slice(first // block, -(-(first + p.numel()) // block))
        values: list[Any] = []
        for k, b in enumerate(buffers):
            if b is None:
                values.append(None)
            elif scales is not None:
                values.append(decode(b, scales[k][blocks], codes[k], work))
            else:
                values.append(b.to(work))
        new_p, new = family_update(
            p.to(work), g.to(work), State(*values), options, exact_sqrt,
            _clamp_at_zero, correction,
        )  # fmt: skip
        j = torch.arange(first, first + p.numel(), dtype=torch.int64, device=p.device)
        round_params, round_state = self._round
        bits = draws(begin, j) if round_state else None
        written: list[tuple[torch.Tensor, torch.Tensor]] = []  # (where, what), all computed
        for k, (b, value) in enumerate(zip(buffers, new, strict=True)):
            if b is None:
                continue
            if scales is not None:
                b_codes, b_scales = encode(value, codes[k], weyl(begin, j, k))
                written += [(b, b_codes), (scales[k][blocks], b_scales)]
            elif round_state:
                random = (cast(torch.Tensor, bits) >> (16 * k)) & 0xFFFF
                written.append((b.view(torch.int16), stochastic_bfloat16(value, random)))
            else:
                written.append(_nearest(b, value))
        if round_params:  # rmsprop._random.parameter_bits
            offset = mix(begin) & _random.WEYL_MASK
            sequence = (offset + (j & 0xFFFFFFFF) * _random.PARAMETER_WEYL) & _random.WEYL_MASK
            written.append((p.view(torch.int16), stochastic_bfloat16(new_p, sequence >> 4)))
        else:
            written.append(_nearest(p, new_p))
        write_all(written, _copy)  # codes never beside another step's scales


def _nearest(target: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where and what to write for ``value`` rounded to nearest into ``target``, as the
    kernels round it: bfloat16 and float16 through float32 (bfloat16 NaN as 0x7FC0)."""
    if target.dtype == torch.bfloat16:
        return target.view(torch.int16), bfloat16_bits(value)
    return target, value if target.dtype != torch.float16 else value.to(torch.float32)


def _copy(target: torch.Tensor, value: torch.Tensor) -> None:
    target.copy_(value)


def _clamp_at_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(x, 0.0)  # NaN stays NaN
