"""torch.optim.RMSprop's own numbers on CUDA: the Triton kernel in torch's orders, checked.

Runs from the source tree on a CUDA machine::

    PYTHONPATH=src python benchmarks/gpu_torch_exact.py --out DIR

1. **Which arithmetic is torch's**: the kernel in torch's order, with and without
   fused multiply-adds, against torch's functional RMSprop (``foreach=True`` and
   ``False``) over three steps, for every option
   combination (maximize, centered, momentum, weight decay, both ``lerp_``
   formulas) in float32 and float64: how many of the 24 combinations agree bit
   for bit (unfused: float32 only, the control); and torch's for-loop against its
   foreach. rmsprop.torch uses the order only where its own first-use check agrees.
2. **The optimizer**: ``rmsprop.torch.RMSprop`` against ``torch.optim.RMSprop``, 100
   steps of an MLP on the GPU, 16 combinations, float32 and float64, ``foreach``
   None and False: ``torch.equal`` on parameters and state, and whether the
   kernel ran.
3. **PyTorch's CUDA-only generic checks**: a CPU checkpoint loaded into a CUDA
   optimizer then stepped beside the CPU one, and ``capturable=True`` captured in
   a CUDA graph and replayed.
4. **Speed**: one step over 10^7 float32 values and over ResNet-50's parameter
   shapes: ``torch.optim.RMSprop`` (foreach) against ``rmsprop.torch.RMSprop`` and
   ``rmsprop.torch.RMSProp`` (rounded once); CUDA events, interleaved rounds,
   medians with min and max.

Writes ``gpu_torch_exact.json`` and prints the tables.
"""

import argparse
import importlib
import itertools
import json
import os
import statistics
import sys
import traceback
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("rmsprop-gpu-torch-exact"))
parser.add_argument("--rounds", type=int, default=15)
parser.add_argument(
    "--dry-run", action="store_true", help="CPU, interpreted, small sizes: parts 1 and 2"
)
ARGS = parser.parse_args()
if ARGS.dry_run:  # before Triton is imported
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

import rmsprop.torch  # noqa: E402
from rmsprop import Hyperparameters, _accel, _torch_probe, _triton  # noqa: E402
from rmsprop.bench import resnet50_shapes  # noqa: E402

DEVICE = torch.device("cpu" if ARGS.dry_run else "cuda")
SIZES = (1, 7, 1027) if ARGS.dry_run else (1, 7, 33, 1027, 16401, 49153, 1 << 20)
RESULTS: dict[str, Any] = {
    "torch": torch.__version__,
    "triton": importlib.import_module("triton").__version__,
    "device": "cpu (dry run)" if ARGS.dry_run else torch.cuda.get_device_name(),
}


def log(*args: Any) -> None:
    print(*args, flush=True)


def save() -> None:
    ARGS.out.mkdir(parents=True, exist_ok=True)
    (ARGS.out / "gpu_torch_exact.json").write_text(json.dumps(RESULTS, indent=1))


def options(values: tuple[bool, ...]) -> Hyperparameters:
    maximize, centered, momentum, decay, small_weight = values
    return Hyperparameters.from_preset(
        "pytorch", lr=1e-2, beta=0.7 if small_weight else 0.99, maximize=maximize,
        centered=centered, momentum=0.9 * momentum, weight_decay=0.1 * decay,
    )  # fmt: skip


def combinations() -> list[tuple[bool, ...]]:
    """Every combination of the four flags; the small lerp_ weight only where it is
    used (centered): 24 in all."""
    return [
        (*flags, small)
        for flags in itertools.product((False, True), repeat=4)
        for small in ((False, True) if flags[1] else (False,))
    ]


def which_arithmetic() -> None:
    table = {}
    variants = [(torch.float32, True), (torch.float64, True), (torch.float32, False)]
    for dtype, fused in variants:  # unfused, no fused multiply-adds: the control
        for foreach in (True, False):
            agree = 0
            for values in combinations():

                def run(members: Any, hp: Hyperparameters, fused: bool = fused) -> None:
                    _triton.update(members, hp, order=_triton.TORCH, fused=fused)

                hp = options(values)
                agree += _torch_probe._compare(run, hp, dtype, DEVICE, foreach, SIZES)
            kind = "foreach" if foreach else "for-loop"
            name = f"{str(dtype)[6:]}, {'fused' if fused else 'unfused'}, vs torch's {kind}"
            table[name] = f"{agree}/{len(combinations())}"
            log(f"{name:44s} agrees bit for bit in {table[name]} combinations")
    RESULTS["arithmetic"] = table
    # torch's own two implementations against each other
    differ = {}
    functional = importlib.import_module("torch.optim.rmsprop").rmsprop
    for dtype in (torch.float32, torch.float64):
        count = 0
        for values in combinations():
            hp = options(values)

            def forloop(members: Any, hp: Hyperparameters) -> None:
                functional(
                    [p for p, _, _ in members], [g for _, g, _ in members],
                    [s[0] for _, _, s in members],
                    [s[2] for _, _, s in members] if hp.centered else [],
                    [s[1] for _, _, s in members] if hp.momentum else [],
                    [torch.zeros(()) for _ in members], foreach=False, maximize=hp.maximize,
                    lr=hp.lr, alpha=hp.beta, eps=hp.eps, weight_decay=hp.weight_decay,
                    momentum=hp.momentum, centered=hp.centered,
                )  # fmt: skip

            count += _torch_probe._compare(forloop, hp, dtype, DEVICE, True, SIZES)
        differ[str(dtype)[6:]] = count
        log(f"torch's for-loop equals its foreach in {count}/24 combinations, {dtype}")
    RESULTS["torch_forloop_equals_foreach"] = differ


def mlp(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256), torch.nn.Tanh(),
        torch.nn.Linear(256, 10),
    )  # fmt: skip
    return net.to(DEVICE, dtype)


def the_optimizer() -> None:
    launches = [0]
    original = _triton.Launch.__call__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        if self._order[0] == _triton.TORCH:
            launches[0] += 1
        original(self, *args, **kwargs)

    _triton.Launch.__call__ = counting  # type: ignore[method-assign]
    rows = []
    for dtype, foreach in itertools.product((torch.float32, torch.float64), (None, False)):
        identical = 0
        for values in itertools.product((False, True), repeat=4):
            maximize, centered, momentum, decay = values
            kwargs = {
                "lr": 1e-3, "maximize": maximize, "centered": centered,
                "momentum": 0.9 * momentum, "weight_decay": 0.01 * decay, "foreach": foreach,
            }  # fmt: skip
            nets = [mlp(dtype), mlp(dtype)]
            opts = [rmsprop.torch.RMSprop(nets[0].parameters(), **kwargs),
                    torch.optim.RMSprop(nets[1].parameters(), **kwargs)]  # fmt: skip
            generator = torch.Generator(DEVICE).manual_seed(1)
            for _ in range(100):
                x = torch.randn(32, 64, device=DEVICE, dtype=dtype, generator=generator)
                y = torch.randn(32, 10, device=DEVICE, dtype=dtype, generator=generator)
                for net, opt in zip(nets, opts, strict=True):
                    opt.zero_grad()
                    torch.nn.functional.mse_loss(net(x), y).backward()
                    opt.step()
            same = all(
                torch.equal(p, q)
                and all(  # torch keeps the step counter on the CPU, ours on the GPU
                    torch.equal(opts[0].state[p][k].cpu(), opts[1].state[q][k].cpu())
                    for k in opts[1].state[q]
                )
                for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True)
            )
            identical += same
        rows.append({"dtype": str(dtype)[6:], "foreach": foreach, "identical": identical,
                     "kernel_launches": launches[0]})  # fmt: skip
        log(
            f"RMSprop vs torch.optim.RMSprop, {dtype}, foreach={foreach}: {identical}/16 "
            f"bit-identical after 100 steps; torch-order kernel launches so far {launches[0]}"
        )
    _triton.Launch.__call__ = original  # type: ignore[method-assign]
    RESULTS["optimizer"] = rows


def cuda_generic_checks() -> None:
    found = {}
    for cls in (torch.optim.RMSprop, rmsprop.torch.RMSprop):
        ok = True
        for kwargs in (
            {},
            {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
        ):
            params = [torch.nn.Parameter(torch.randn(2, 3)) for _ in range(2)]
            for p in params:
                p.grad = torch.randn_like(p)
            opt = cls(params, **kwargs)
            for _ in range(3):
                opt.step()
            with torch.no_grad():
                cuda = [p.to(DEVICE) for p in params]
            for p, q in zip(cuda, params, strict=True):
                p.grad = q.grad.to(DEVICE)
            twin = cls(cuda, **kwargs)
            twin.load_state_dict(opt.state_dict())
            for _ in range(5):
                opt.step()
                twin.step()
                ok &= all(torch.allclose(p.cpu(), q) for p, q in zip(cuda, params, strict=True))
        found[f"{cls.__module__}: CPU checkpoint into CUDA, stepped alike"] = bool(ok)
        # capturable in a CUDA graph
        torch.manual_seed(3)
        p = torch.nn.Parameter(torch.randn(1000, device=DEVICE))
        p.grad = torch.randn_like(p)
        opt = cls([p], lr=1e-2, capturable=True, momentum=0.9)
        opt.step()  # state and warm-up outside the graph
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            opt.step()
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(graph):
            opt.step()
        for _ in range(5):
            graph.replay()
        torch.cuda.synchronize()
        found[f"{cls.__module__}: capturable step in a CUDA graph"] = p.detach().cpu().tolist()[:3]
    ours, theirs = (
        found[f"{m}: capturable step in a CUDA graph"]
        for m in ("rmsprop.torch", "torch.optim.rmsprop")
    )
    found["capturable graphs agree"] = ours == theirs
    for k, v in found.items():
        log(f"{k}: {v}")
    RESULTS["cuda_checks"] = found


def speed() -> None:
    rows = []
    for case, shapes in (
        ("flat 1e7 float32", [(10_000_000,)]),
        ("ResNet-50 shapes float32", resnet50_shapes()),
    ):
        elements = sum(torch.Size(s).numel() for s in shapes)
        makers = {
            "torch.optim.RMSprop (foreach)": lambda ps: torch.optim.RMSprop(ps, lr=1e-3),
            "rmsprop.torch.RMSprop (Triton, torch's order)": lambda ps: rmsprop.torch.RMSprop(
                ps, lr=1e-3
            ),
            "rmsprop.torch.RMSProp (Triton, rounded once)": lambda ps: rmsprop.torch.RMSProp(
                ps, lr=1e-3, preset="pytorch", beta=0.99),
        }  # fmt: skip
        steps = {}
        for name, make in makers.items():
            torch.manual_seed(0)
            params = [torch.nn.Parameter(torch.randn(s, device=DEVICE)) for s in shapes]
            for p in params:
                p.grad = torch.randn_like(p)
            opt = make(params)
            for _ in range(3):
                opt.step()
            steps[name] = opt.step
        times: dict[str, list[float]] = {name: [] for name in steps}
        calls = 20
        for _ in range(ARGS.rounds):
            for name, step in steps.items():
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                torch.cuda.synchronize()
                start.record()
                for _ in range(calls):
                    step()
                end.record()
                torch.cuda.synchronize()
                times[name].append(start.elapsed_time(end) / calls)
        for name, values in times.items():
            row = {
                "case": case, "elements": elements, "implementation": name,
                "median_ms": statistics.median(values), "min_ms": min(values),
                "max_ms": max(values),
            }  # fmt: skip
            rows.append(row)
            spread = f"({row['min_ms']:.4f} - {row['max_ms']:.4f})"
            log(f"{case:28s} {name:48s} {row['median_ms']:.4f} ms {spread}")
    RESULTS["speed"] = rows


def main() -> None:
    log(RESULTS)
    assert _accel.triton() is not None, "the Triton kernel did not load"
    failed = False
    parts = [which_arithmetic, the_optimizer]
    for part in parts if ARGS.dry_run else [*parts, cuda_generic_checks, speed]:
        try:
            part()
        except Exception:
            failed = True
            RESULTS[part.__name__ + "_error"] = traceback.format_exc()
            traceback.print_exc()
        save()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
