"""Batch-wide operations for losses that compare samples with each other (contrastive, clustering).

Under data parallelism every worker holds B/W samples; a contrastive loss over the *global*
batch needs the other workers' features (with gradients flowing back to their owners) and a
clustering step (SwAV's Sinkhorn) needs global sums. Outside ``torch.distributed`` (one
process, tests, the laptop) these are identities, so a method written with them gives the
same loss on one worker with batch B as on two workers with B/2 each.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [b, ...] from every worker in rank order -> [W*b, ...], differentiable.

    ``torch.distributed.nn.functional.all_gather`` back-propagates each slice to the worker
    that produced it (plain ``dist.all_gather`` would cut the graph).
    """
    if not is_distributed():
        return x
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API; still the public autograd gather
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every worker in rank order, without gradients (metadata, labels)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over workers (in place on a copy; no gradient), e.g. Sinkhorn's marginals."""
    if not is_distributed():
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def local_slice(global_batch: int) -> slice:
    """This worker's rows of a gathered [W*b, ...] tensor (rank order, equal b per worker)."""
    b = global_batch // world_size()
    return slice(rank() * b, (rank() + 1) * b)
