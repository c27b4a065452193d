"""Two processes on loopback (gloo) training with rmsprop.torch.RMSProp, checked against one.

Run by test_distributed.py as ``python distributed_worker.py RESULT.json [FAILING_RANK]``: spawns two
ranks that train the same model under DistributedDataParallel, under
ZeroRedundancyOptimizer, under FSDP2 ``fully_shard``, and through a distributed
checkpoint of FSDP2's optimizer state; rank 0 compares each run with a
single-process run on the full batch and writes the largest differences to
RESULT.json. Every collective has a timeout, so a failing rank fails the run;
FAILING_RANK makes that rank raise, to check exactly that. A rank that dies of a
signal (a C++ abort, say) prints every thread's Python stack first (faulthandler).
"""

import faulthandler
import json
import os
import sys
import tempfile
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import rmsprop.torch

WORLD = 2
STEPS = 8
OPTIONS = {"preset": "pytorch", "lr": 0.01, "beta": 0.9, "momentum": 0.9, "centered": True}


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).double()


def batches():
    """The full batch of each step; rank r trains on rows r::WORLD."""
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(8, 6, generator=generator, dtype=torch.float64),
            torch.randn(8, 3, generator=generator, dtype=torch.float64),
        )
        for _ in range(STEPS)
    ]


def train(model, optimizer, data, rank=None, steps=None):
    rows = slice(None) if rank is None else slice(rank, None, WORLD)
    for x, y in data[:steps]:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
        optimizer.step()


def reference(steps=STEPS):
    model = make_model()
    optimizer = rmsprop.torch.RMSProp(model.parameters(), **OPTIONS)
    train(model, optimizer, batches(), steps=steps)
    return model, optimizer


def difference(tensors, expected):
    return max(
        float((a.detach() - b.detach()).abs().max() / b.detach().abs().max())
        for a, b in zip(tensors, expected, strict=True)
    )


def full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def run_ddp(rank, results):
    model = torch.nn.parallel.DistributedDataParallel(make_model())
    optimizer = rmsprop.torch.RMSProp(model.parameters(), **OPTIONS)
    train(model, optimizer, batches(), rank)
    ref_model, ref_optimizer = reference()
    results["ddp"] = difference(list(model.parameters()), list(ref_model.parameters()))
    results["ddp_state"] = difference(
        [optimizer.state[p]["square_avg"] for p in model.parameters()],
        [ref_optimizer.state[p]["square_avg"] for p in ref_model.parameters()],
    )


def run_ddp_flat(rank, results):
    """flatten_ before DDP: DDP copies the averaged gradients into the flat buffer, where
    they stay (1.0 in ``ddp_flat_kept`` when every gradient is a view of it at the end)."""
    from rmsprop.torch._flatten import is_flat_gradient  # noqa: PLC0415

    plain = make_model()
    rmsprop.torch.flatten_(plain)
    model = torch.nn.parallel.DistributedDataParallel(plain)
    optimizer = rmsprop.torch.RMSProp(model.parameters(), **OPTIONS)
    train(model, optimizer, batches(), rank)
    ref_model, _ = reference()
    results["ddp_flat"] = difference(list(model.parameters()), list(ref_model.parameters()))
    results["ddp_flat_kept"] = float(all(is_flat_gradient(p.grad) for p in model.parameters()))


def run_zero(rank, results):
    from torch.distributed.optim import ZeroRedundancyOptimizer  # noqa: PLC0415

    model = torch.nn.parallel.DistributedDataParallel(make_model())
    optimizer = ZeroRedundancyOptimizer(
        model.parameters(), optimizer_class=rmsprop.torch.RMSProp, **OPTIONS
    )
    train(model, optimizer, batches(), rank)
    optimizer.consolidate_state_dict(to=0)
    ref_model, ref_optimizer = reference()
    results["zero"] = difference(list(model.parameters()), list(ref_model.parameters()))
    if rank == 0:
        state = optimizer.state_dict()["state"]
        ref_state = ref_optimizer.state_dict()["state"]
        assert sorted(state) == sorted(ref_state), (sorted(state), sorted(ref_state))
        results["zero_state"] = max(
            difference([state[i][key]], [ref_state[i][key]])
            for i in state
            for key in ("square_avg", "momentum_buffer", "grad_avg")
        )


def run_fsdp2(rank, results):
    from torch.distributed.fsdp import fully_shard  # noqa: PLC0415

    model = make_model()
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    optimizer = rmsprop.torch.RMSProp(model.parameters(), **OPTIONS)
    train(model, optimizer, batches(), rank)
    ref_model, ref_optimizer = reference()
    params = list(model.parameters())
    assert all(type(p).__name__ == "DTensor" for p in params)
    assert all(type(optimizer.state[p]["square_avg"]).__name__ == "DTensor" for p in params)
    results["fsdp2"] = difference([full(p) for p in params], list(ref_model.parameters()))
    results["fsdp2_state"] = difference(
        [full(optimizer.state[p]["grad_avg"]) for p in params],
        [ref_optimizer.state[p]["grad_avg"] for p in ref_model.parameters()],
    )


def run_checkpoint(rank, results, directory):
    import torch.distributed.checkpoint as dcp  # noqa: PLC0415
    from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.fsdp import fully_shard  # noqa: PLC0415

    def sharded():
        model = make_model()
        fully_shard(model)
        return model, rmsprop.torch.RMSProp(model.parameters(), **OPTIONS)

    data = batches()
    model, optimizer = sharded()
    train(model, optimizer, data[: STEPS // 2], rank)
    dcp.save(
        {"model": model.state_dict(), "optimizer": get_optimizer_state_dict(model, optimizer)},
        checkpoint_id=directory,
    )

    resumed_model, resumed_optimizer = sharded()
    state = {
        "model": resumed_model.state_dict(),
        "optimizer": get_optimizer_state_dict(resumed_model, resumed_optimizer),
    }
    dcp.load(state, checkpoint_id=directory)
    resumed_model.load_state_dict(state["model"])
    set_optimizer_state_dict(resumed_model, resumed_optimizer, state["optimizer"])
    train(resumed_model, resumed_optimizer, data[STEPS // 2 :], rank)
    ref_model, _ = reference()
    results["checkpoint"] = difference(
        [full(p) for p in resumed_model.parameters()], list(ref_model.parameters())
    )


def worker(rank, port, result_file, directory, failing_rank):
    faulthandler.enable(all_threads=True)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    try:
        if rank == failing_rank:
            # Printed first: spawn reports whichever rank it sees fail first, and the
            # other rank can fail too once this one is gone.
            print(f"rank {rank} fails on purpose", file=sys.stderr, flush=True)
            raise RuntimeError(f"rank {rank} fails on purpose")
        results = {}
        run_ddp(rank, results)
        run_ddp_flat(rank, results)
        run_zero(rank, results)
        run_fsdp2(rank, results)
        run_checkpoint(rank, results, directory)
        dist.barrier()
        if rank == 0:
            with open(result_file, "w") as file:
                json.dump(results, file)
    finally:
        dist.destroy_process_group()


def free_port():
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        failing_rank = int(sys.argv[2]) if len(sys.argv) > 2 else None
        mp.spawn(
            worker, args=(free_port(), sys.argv[1], checkpoint_dir, failing_rank), nprocs=WORLD
        )
