"""Data-parallel training under ``torchrun``: process group, global-batch gathers, synced BatchNorm.

``torchrun --nproc_per_node N -m lookalike train --config ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_distributed`
joins them (NCCL on CUDA, gloo on CPU). Every rank builds the same seeded stream and takes its
contiguous shard of the global batch; the embeddings are gathered back, *with* gradients
(``torch.distributed.nn.functional.all_gather``), so in-batch hard-negative mining sees the global
batch exactly as one process would.

Convention:
    - Every rank computes the same global loss; the gathers' backward sums the gradients of all
      ranks' losses and DistributedDataParallel averages them, which gives the single-process gradient.
    - BatchNorm statistics are global: ``nn.SyncBatchNorm`` on CUDA; on CPU, where it is not
      supported, :class:`GlobalBatchNorm` (sums and squared sums all-reduced in float64, with
      gradients). The CPU result matches one process up to float32 rounding of the statistics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from lookalike.core.errors import OptionError, ShapeError

__all__ = [
    "DistContext",
    "GlobalBatchNorm",
    "convert_batchnorm",
    "gather_batch",
    "init_distributed",
    "shard",
]


@dataclass
class DistContext:
    """This process's place in the job.

    Attributes:
        rank: global rank (0 writes the run directory, logs and shows progress).
        world_size: number of processes.
        local_rank: rank on this machine (its CUDA device).
        owned: this context initialised the process group (and destroys it in :meth:`close`).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Barrier, then destroy the process group if this context created it."""
        if self.enabled and dist.is_initialized():
            dist.barrier()
            if self.owned:
                dist.destroy_process_group()


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the ``torchrun`` job described by the environment, if any.

    Returns:
        The context and the device of this rank (``cuda:LOCAL_RANK`` on CUDA).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owned = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owned = True
    return DistContext(rank=rank, world_size=world, local_rank=local, owned=owned), device


def shard(batch: tuple[torch.Tensor, ...], ctx: DistContext) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice (along dim 0) of every tensor of a global batch."""
    if not ctx.enabled:
        return batch
    n = batch[0].shape[0]
    if n % ctx.world_size:
        raise OptionError(
            f"batch_size: expected a multiple of the {ctx.world_size} processes, got {n}"
        )
    size = n // ctx.world_size
    return tuple(t[ctx.rank * size : (ctx.rank + 1) * size] for t in batch)


def gather_batch(tensors: tuple[torch.Tensor, ...], ctx: DistContext) -> tuple[torch.Tensor, ...]:
    """Concatenate every rank's shard in rank order; floating tensors keep their gradients."""
    if not ctx.enabled:
        return tensors
    from torch.distributed.nn.functional import all_gather

    out = []
    for t in tensors:
        if t.is_floating_point() and t.requires_grad:
            out.append(torch.cat(all_gather(t.contiguous())))
        else:
            parts = [torch.empty_like(t) for _ in range(ctx.world_size)]
            dist.all_gather(parts, t.contiguous())
            out.append(torch.cat(parts))
    return tuple(out)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover every rank's batch (CPU stand-in for SyncBatchNorm).

    Outside training, or in one process, it is plain BatchNorm. Same parameters, buffers and
    state-dict keys as the BatchNorm it replaces (:func:`convert_batchnorm`).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ShapeError(
                f"input: expected at least 2 dimensions (N, C, ...), got {input.dim()}"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        from torch.distributed.nn.functional import all_reduce

        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x64 = input.double()
        count = input.new_full((1,), input.numel() // c, dtype=torch.float64)
        total = all_reduce(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]))
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        shape = [1, c] + [1] * (input.dim() - 2)
        out = (input - mean.to(input.dtype).view(shape)) * torch.rsqrt(var + self.eps).to(
            input.dtype
        ).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach() * n / (n - 1).clamp_min(1))
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
        self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))


def _to_global(bn: nn.modules.batchnorm._BatchNorm) -> GlobalBatchNorm:
    new = GlobalBatchNorm(
        bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats
    ).to(next(iter(bn.state_dict().values())).device)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm of ``module`` compute global statistics (in place where possible).

    ``nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` on CPU. Returns the converted module.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm
    ):
        return _to_global(module)
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child, device))
    return module
