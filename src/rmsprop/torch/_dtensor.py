"""DTensors (FSDP2, tensor parallelism): updated shard by shard where that is the same step.

The update is elementwise, so a DTensor parameter whose gradient and state are
laid out alike (same placements and mesh, no pending reductions) is updated by
updating each rank's local shard with the plain paths; any other DTensor takes
the foreach path whole, with DTensor's own operations.
"""

from typing import Any

import torch

from rmsprop.torch._foreach import PLAIN


def local(p: torch.Tensor, g: torch.Tensor, buffers: list[Any]) -> tuple[Any, Any, list[Any]]:
    """For DTensors laid out alike, their local shards; other tensors as they are."""
    if type(p) in PLAIN or not hasattr(p, "placements"):
        return p, g, buffers
    tensors: list[Any] = [p, g, *(b for b in buffers if b is not None)]
    if not all(
        hasattr(t, "placements")
        and t.placements == p.placements
        and t.device_mesh == tensors[0].device_mesh
        and t.shape == p.shape
        for t in tensors
    ) or any(placement.is_partial() for placement in p.placements):
        return p, g, buffers
    return (
        tensors[0].to_local(),
        tensors[1].to_local(),
        [None if b is None else b.to_local() for b in buffers],
    )
