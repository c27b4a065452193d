"""Whether a kernel reproduces this process's ``torch.optim.RMSprop``, measured once.

The kernels that compute PyTorch's own sequence of roundings
(:mod:`rmsprop._torch_kernel` on the CPU, torch's order of
:mod:`rmsprop._triton` on CUDA) rest on facts about torch's kernels that can
change with its version, its build and the instruction set it dispatches to
(which operations it fuses, which square root it calls). Before a kernel serves an
option combination and dtype, :func:`reproduces` runs three steps of it beside
torch's functional RMSprop, on tensors whose sizes leave vector tails, block and
chunk ends and thread splits everywhere, and the answer is kept for the process.

This module imports torch.
"""

import importlib
import threading
from collections.abc import Callable, Hashable
from typing import NamedTuple

import torch

from rmsprop._kinds import Member
from rmsprop._options import Hyperparameters


class TorchSwitches(NamedTuple):
    """What changes the work of a step in torch's order (compile-time constants of a
    kernel); not rmsprop's Switches: torch's lerp_ has two formulas."""

    maximize: bool
    centered: bool
    momentum: bool
    weight_decay: bool
    small_weight: bool  # |1 - alpha| < 0.5: lerp_'s first formula

    @classmethod
    def of(cls, hp: Hyperparameters) -> "TorchSwitches":
        return cls(
            hp.maximize, hp.centered, hp.momentum != 0.0, hp.weight_decay != 0.0,
            abs(1.0 - hp.beta) < 0.5,
        )  # fmt: skip


_verdicts: dict[Hashable, bool] = {}
_lock = threading.Lock()


def reproduces(
    key: Hashable,
    update: Callable[[list[Member], Hyperparameters], None],
    hp: Hyperparameters,
    dtype: torch.dtype,
    *,
    device: torch.device | str = "cpu",
    foreach: bool | None = None,
    sizes: tuple[int, ...] = (1, 7, 33, 1027, 16401, 49153),
) -> bool:
    """Whether ``update`` (one step over members, in place) gives torch's functional
    RMSprop's parameters and state bit for bit, for ``hp`` in ``dtype`` on ``device``
    with torch's ``foreach`` choice; measured on first call for each ``key``."""
    with _lock:
        if key not in _verdicts:
            _verdicts[key] = _compare(update, hp, dtype, torch.device(device), foreach, sizes)
        return _verdicts[key]


def _compare(
    update: Callable[[list[Member], Hyperparameters], None],
    hp: Hyperparameters,
    dtype: torch.dtype,
    device: torch.device,
    foreach: bool | None,
    sizes: tuple[int, ...],
) -> bool:
    functional = importlib.import_module("torch.optim.rmsprop").rmsprop
    generator = torch.Generator().manual_seed(0)

    def draw(n: int, scale: float = 1.0, positive: bool = False) -> torch.Tensor:
        x = torch.randn(n, generator=generator, dtype=torch.float64) * scale
        return (x.abs() if positive else x).to(device, dtype)

    starts = [(draw(n), [draw(n, 0.1, True), draw(n, 0.01), draw(n, 0.01)]) for n in sizes]
    ours = [(p.clone(), [s.clone() for s in state]) for p, state in starts]
    theirs = [(p.clone(), [s.clone() for s in state]) for p, state in starts]
    steps = [torch.zeros((), dtype=torch.float32) for _ in sizes]
    for _ in range(3):
        grads = [draw(n) for n in sizes]
        update([(p, g, state) for (p, state), g in zip(ours, grads, strict=True)], hp)
        functional(
            [p for p, _ in theirs], [g.clone() for g in grads],
            [state[0] for _, state in theirs],
            [state[2] for _, state in theirs] if hp.centered else [],
            [state[1] for _, state in theirs] if hp.momentum else [],
            steps, foreach=foreach,
            maximize=hp.maximize, lr=hp.lr, alpha=hp.beta, eps=hp.eps,
            weight_decay=hp.weight_decay, momentum=hp.momentum, centered=hp.centered,
        )  # fmt: skip
    used = [True, bool(hp.momentum), hp.centered]
    return all(
        same(p, q) and all(same(x, y) for x, y, on in zip(s, t, used, strict=True) if on)
        for (p, s), (q, t) in zip(ours, theirs, strict=True)
    )


def same(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Equal values, NaN where the other has NaN (torch's centered variance can be
    negative: its root is NaN, in torch as in the kernels)."""
    return bool(((x == y) | (x.isnan() & y.isnan())).all())
