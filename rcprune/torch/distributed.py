"""Data-parallel fine-tuning: what :func:`rcprune.torch.finetune` does when ``torch.distributed`` is
initialized (a script launched by ``torchrun`` that called ``init_process_group``, or
:func:`init_distributed`). Every process trains the same model on its share of each batch and
``DistributedDataParallel`` averages the gradients, so the parameters stay identical on every process.

The batch size of the user's loader is the global batch: each of the W processes takes ``batch_size / W``
of its samples (a ``DistributedSampler``: process r gets samples r, r + W, r + 2W, ... of the epoch's
order), so W processes take the steps that one process would take with the same loader. BatchNorm
normalizes with each process's own batch statistics (convert the model with
``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` for global ones); its running statistics are averaged
over the processes at the end of every epoch.

>>> rank_and_world()   # outside a process group: one process
(0, 1)
"""
from __future__ import annotations

import inspect
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from rcprune.validation import InvalidInstanceError

__all__ = ["init_distributed", "is_distributed", "rank_and_world", "train_loader_for", "eval_loader_for",
           "all_sum", "average_batchnorm_statistics", "data_parallel"]

BACKENDS = ("gloo", "nccl")


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialized (then finetune trains data-parallel)."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes; ``(0, 1)`` without a process group."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def init_distributed(backend: str | None = None) -> str:
    """Start the process group of a ``torchrun`` launch from its environment; returns this process's device.

    Parameters
    ----------
    backend : "gloo", "nccl" or None
        Default ``"nccl"`` when CUDA is available, else ``"gloo"``. With ``"nccl"`` each process takes the GPU
        of its local rank (``LOCAL_RANK``).

    Returns
    -------
    str
        ``"cuda:<local rank>"`` (nccl) or ``"cpu"`` (gloo): the ``device=`` to give :func:`rcprune.torch.finetune`.

    Notes
    -----
    A process group that is already initialized is kept (its backend decides the device). Call
    ``torch.distributed.destroy_process_group()`` at the end of the script.
    """
    if backend is not None and backend not in BACKENDS:
        raise InvalidInstanceError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if not dist.is_available():
        raise InvalidInstanceError("this PyTorch build has no torch.distributed")
    if not is_distributed():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise InvalidInstanceError(f"init_distributed() reads the environment torchrun sets, but "
                                       f"{', '.join(missing)} is not set: launch the script with torchrun "
                                       "(python -m torch.distributed.run)")
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            if not torch.cuda.is_available():
                raise InvalidInstanceError("backend 'nccl' needs CUDA: use 'gloo' on CPU")
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    if dist.get_backend() == "nccl":
        return f"cuda:{torch.cuda.current_device()}"
    return "cpu"


def _loader_options(loader: DataLoader, generator) -> dict:
    """The DataLoader settings that a rebuilt loader keeps (workers' options only with workers)."""
    options = {"num_workers": loader.num_workers, "collate_fn": loader.collate_fn, "pin_memory": loader.pin_memory,
               "timeout": loader.timeout, "worker_init_fn": loader.worker_init_fn, "generator": generator}
    if loader.num_workers > 0:
        options.update(multiprocessing_context=loader.multiprocessing_context,
                       prefetch_factor=loader.prefetch_factor, persistent_workers=loader.persistent_workers)
    return options


def train_loader_for(loader, seed: int, generator=None) -> DataLoader:
    """The loader this process trains on: ``loader`` itself when it has a ``DistributedSampler`` (its batch size
    is then per process), else a DataLoader of the same dataset, collate_fn, workers and drop_last whose
    ``DistributedSampler`` (shuffling if ``loader`` shuffles, seeded with ``seed``) gives this process
    ``batch_size / W`` of every global batch of ``batch_size``.

    Without drop_last the sampler repeats up to W - 1 samples so that every process has as many (a step
    needs every process); with it, the incomplete last global batch is dropped as one process would.
    """
    rank, world = rank_and_world()
    if not isinstance(loader, DataLoader):
        raise InvalidInstanceError(
            f"under torch.distributed, train_loader must be a torch.utils.data.DataLoader (finetune splits its batches "
            f"over the {world} processes with a DistributedSampler), got {type(loader).__name__}: give a DataLoader, "
            "or a DataLoader with a DistributedSampler of your own")
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    if isinstance(loader.dataset, IterableDataset):
        raise InvalidInstanceError("under torch.distributed, train_loader's IterableDataset cannot be split by a "
                                   "sampler: give a map-style dataset (a DataLoader with a DistributedSampler of your "
                                   "own, if you split it yourself)")
    if loader.batch_size is None:
        raise InvalidInstanceError("under torch.distributed, train_loader has a batch_sampler of its own, which "
                                   "finetune cannot split: give batch_size= (the global batch), or a "
                                   "DistributedSampler of your own")
    sampler = loader.sampler
    plain_random = (type(sampler) is RandomSampler and not sampler.replacement
                    and sampler.num_samples == len(loader.dataset))
    if not (type(sampler) is SequentialSampler or plain_random):
        raise InvalidInstanceError(f"under torch.distributed, train_loader's sampler ({type(sampler).__name__}) "
                                   "cannot be split over the processes: give shuffle=True or False, or a "
                                   "DistributedSampler of your own")
    if loader.batch_size % world:
        raise InvalidInstanceError(
            f"under torch.distributed, train_loader's batch_size is the global batch, split evenly over the {world} "
            f"processes: {loader.batch_size} is not divisible by {world}")
    sampler = DistributedSampler(loader.dataset, num_replicas=world, rank=rank, shuffle=plain_random, seed=seed,
                                 drop_last=loader.drop_last)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // world, sampler=sampler,
                      drop_last=loader.drop_last, **_loader_options(loader, generator))


def eval_loader_for(loader):
    """The loader this process evaluates: a map-style DataLoader with a plain sampler is split without
    repetition (process r takes samples r, r + W, ...); any other loader is evaluated whole on every process
    (the counts are summed over the processes, so the accuracy is the same)."""
    rank, world = rank_and_world()
    if not (isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)
            and loader.batch_size is not None and type(loader.sampler) in (SequentialSampler, RandomSampler)):
        return loader
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=range(rank, len(loader.dataset), world),
                      drop_last=loader.drop_last, **_loader_options(loader, loader.generator))


def all_sum(values, device) -> list[float]:
    """``values`` (numbers) summed over the processes, in float64, on every process."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


@torch.no_grad()
def average_batchnorm_statistics(model: nn.Module) -> None:
    """Every BatchNorm's running mean and variance set to their mean over the processes (in place)."""
    world = dist.get_world_size()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            for t in (m.running_mean, m.running_var):
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t.div_(world)


@torch.no_grad()
def data_parallel(model: nn.Module, find_unused_parameters: bool = False) -> DistributedDataParallel:
    """``model`` wrapped in ``DistributedDataParallel``; its parameters and buffers (masks included) are rank
    0's from here on. Buffers are not broadcast at every forward: the masks and stored originals never
    change, and the BatchNorm statistics are averaged once per epoch (:func:`average_batchnorm_statistics`).
    ``find_unused_parameters`` goes to DDP (parameters that get no gradient in a step)."""
    for t in model.buffers():   # DDP's own start-up broadcast skips buffers in older PyTorch
        dist.broadcast(t, src=0)
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else "broadcast_buffers")   # renamed in recent PyTorch
    return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters, **{no_sync: False})
