"""Does low-bit state train as float32 state does? Final loss and accuracy of
rmsprop.torch.RMSProp with ``state_bits`` 32, 16 and 8, three seeds each, on two tasks
whose data ship with rmsprop or are generated here (no download):

- digits: the 1,797 8x8 digits of rmsprop's demo, a 64-512-10 tanh network (both
  weight matrices take 8-bit state), 40 epochs of batches of 32;
- chars: next-character prediction on text drawn from a fixed random bigram chain
  over 64 characters with a Zipf-like skew (rare characters: a long tail of gradient
  magnitudes in the embedding), an embedding of 64x64, 8 characters of context,
  a 512-64 hidden layer; 1,500 steps of batches of 64.

Each run uses ``preset="pytorch"``, ``momentum=0.9`` (so that the momentum buffer
is stored in 8 bits too) and float32 arithmetic; the table gives mean and spread
(min to max) over the seeds.

Where bitsandbytes is importable, its ``RMSprop8bit`` and ``RMSprop32bit`` run beside
them with the same settings (lr 1e-3, alpha 0.99, eps 1e-8, momentum 0.9; 8-bit
state from 4,096 elements, as here). bitsandbytes accepts ``momentum`` but does not
use it (0.50.2: its RMSprop update has no momentum buffer), so ``state_bits=8`` also
runs without momentum, to compare like with like.

With ``--bfloat16``, the question is rather the parameters': both networks in bfloat16
(inputs too), rmsprop.torch.RMSProp writing them rounded to nearest or stochastically
(``stochastic_rounding=True``), beside the same networks in float32, at ``--lr``
(default 1e-3; at 1e-4 most updates fall below bfloat16's resolution).

    .venv/bin/python benchmarks/train_state_bits.py [--seeds 3] [--bfloat16 [--lr 1e-4]]
"""

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch

import rmsprop.torch
from rmsprop.demo._digits import load_digits, split

#: A run's optimizer, from its parameters and the seed.
Factory = Callable[[list[torch.nn.Parameter], int], torch.optim.Optimizer]


def _ours(bits: int, momentum: float = 0.9, lr: float = 1e-3, rounded: bool = False) -> Factory:
    def make(params: list[torch.nn.Parameter], seed: int) -> torch.optim.Optimizer:
        return rmsprop.torch.RMSProp(
            params, preset="pytorch", lr=lr, momentum=momentum, state_bits=bits, seed=seed,
            float32_arithmetic=True, stochastic_rounding=rounded,
        )  # fmt: skip

    return make


def _bitsandbytes(name: str) -> Factory | None:
    try:
        import bitsandbytes  # noqa: PLC0415 - optional: compared where installed
    except ImportError:
        return None
    optimizer = getattr(bitsandbytes.optim, name)

    def make(params: list[torch.nn.Parameter], seed: int) -> torch.optim.Optimizer:
        del seed  # its rounding is not random
        made: torch.optim.Optimizer = optimizer(params, lr=1e-3, alpha=0.99, eps=1e-8, momentum=0.9)
        return made

    return make


def contenders() -> dict[str, Factory]:
    """The optimizers compared, by their row's label."""
    chosen = {f"state_bits={bits}": _ours(bits) for bits in (32, 16, 8)}
    chosen["state_bits=8, momentum=0"] = _ours(8, momentum=0.0)
    for name in ("RMSprop8bit", "RMSprop32bit"):
        factory = _bitsandbytes(name)
        if factory is not None:
            chosen[f"bitsandbytes {name}"] = factory
    return chosen


def bfloat16_contenders(lr: float) -> dict[str, tuple[Factory, torch.dtype]]:
    """Float32 and bfloat16 parameters, by their row's label: (optimizer, dtype)."""
    return {
        "float32 parameters": (_ours(32, lr=lr), torch.float32),
        "bfloat16, to nearest": (_ours(32, lr=lr), torch.bfloat16),
        "bfloat16, stochastic_rounding": (_ours(32, lr=lr, rounded=True), torch.bfloat16),
        "bfloat16, stochastic_rounding, state_bits=16": (
            _ours(16, lr=lr, rounded=True), torch.bfloat16,
        ),
    }  # fmt: skip


def _digits(seed: int, make: Factory, dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    images, labels = load_digits()
    train, test = split(labels, random_seed=0)
    x = torch.tensor(images, dtype=torch.float32).to(dtype)
    y = torch.tensor(labels)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.Tanh(), torch.nn.Linear(512, 10))
    net.to(dtype)
    opt = make(list(net.parameters()), seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.tensor(train)
    for _ in range(40):
        for batch in order[torch.randperm(order.numel(), generator=generator)].split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(net(x[train]).float(), y[train]))
        accuracy = float((net(x[test]).argmax(1) == y[test]).float().mean())
    return loss, accuracy


def _text(n: int) -> torch.Tensor:
    """Characters drawn from a fixed bigram chain over 64 symbols, skewed so that some
    are rare (the same text for every seed)."""
    rng = np.random.default_rng(1234)
    weights = 1.0 / np.arange(1, 65) ** 1.1
    chain = rng.dirichlet(np.full(64, 0.1), size=64) * weights
    chain /= chain.sum(axis=1, keepdims=True)
    out = np.empty(n, dtype=np.int64)
    out[0] = 0
    uniform = rng.random(n)
    cumulative = np.cumsum(chain, axis=1)
    for i in range(1, n):
        out[i] = min(int(np.searchsorted(cumulative[out[i - 1]], uniform[i])), 63)
    return torch.from_numpy(out)


CONTEXT = 8


def _chars(
    seed: int, make: Factory, text: torch.Tensor, dtype: torch.dtype = torch.float32
) -> tuple[float, float]:
    torch.manual_seed(seed)
    embed = torch.nn.Embedding(64, 64).to(dtype)
    head = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64 * CONTEXT, 512), torch.nn.Tanh(),
        torch.nn.Linear(512, 64),
    ).to(dtype)  # fmt: skip
    params = [*embed.parameters(), *head.parameters()]
    opt = make(params, seed)
    held_out = text[-20_000:]
    train = text[:-20_000]
    windows = train.unfold(0, CONTEXT + 1, 1)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(1500):
        batch = windows[torch.randint(0, windows.shape[0], (64,), generator=generator)]
        opt.zero_grad()
        logits = head(embed(batch[:, :CONTEXT])).float()
        torch.nn.functional.cross_entropy(logits, batch[:, CONTEXT]).backward()
        opt.step()
    with torch.no_grad():
        test = held_out.unfold(0, CONTEXT + 1, 1)
        logits = head(embed(test[:, :CONTEXT])).float()
        loss = float(torch.nn.functional.cross_entropy(logits, test[:, CONTEXT]))
        accuracy = float((logits.argmax(1) == test[:, CONTEXT]).float().mean())
    return loss, accuracy


def _summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ({min(values):.4f} to {max(values):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bfloat16", action="store_true", help="bfloat16 parameters")
    parser.add_argument("--lr", type=float, default=1e-3, help="with --bfloat16")
    arguments = parser.parse_args()
    seeds = range(arguments.seeds)
    torch.set_num_threads(2)
    text = _text(220_000)
    tasks = {
        "digits (train loss, test accuracy)": _digits,
        "chars (held-out loss, accuracy)": lambda s, m, d: _chars(s, m, text, d),
    }
    chosen = {label: (make, torch.float32) for label, make in contenders().items()}
    if arguments.bfloat16:
        chosen = bfloat16_contenders(arguments.lr)
        print(f"lr={arguments.lr:g}")
    width = max(map(len, chosen))
    for title, run in tasks.items():
        print(f"\n{title}, {len(seeds)} seeds: mean (min to max)")
        for label, (make, dtype) in chosen.items():
            results = [run(seed, make, dtype) for seed in seeds]
            losses, accuracies = zip(*results, strict=True)
            print(f"  {label:<{width}}  {_summary(list(losses))}  {_summary(list(accuracies))}")


if __name__ == "__main__":
    main()
