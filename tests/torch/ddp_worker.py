"""The script ``tests/torch/test_ddp.py`` launches with torchrun (2 CPU processes, gloo): each process
fine-tunes the same masked models under DistributedDataParallel and saves its history and weights to
``<out>/rank<r>.pt``; the test compares them with each other and with :func:`runs` in one process.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 tests/torch/ddp_worker.py OUT``
"""
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import rcprune
from rcprune.torch import apply, extract, feather, finetune
from rcprune.torch.rcmask import keep_mask, trainable_tensor

N, BATCH, EPOCHS = 40, 8, 2


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(N, 1, 6, 6, generator=g), torch.randint(0, 3, (N,), generator=g))


def net(batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    norm = [nn.BatchNorm2d(6)] if batchnorm else []
    return nn.Sequential(nn.Conv2d(1, 6, 3), *norm, nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 2 * 2, 3))


def masked(batchnorm: bool = False) -> nn.Module:
    """The net masked row-and-column at 60% by the greedy network solver."""
    model = net(batchnorm)
    ext = extract(model, torch.zeros(1, 1, 6, 6), sparsity=0.6)
    apply(model, rcprune.solve(ext.instance, method="network-greedy").solution, ext)
    return model


def result(history: list[dict], model: nn.Module) -> tuple:
    """``(history, state_dict, {module: (effective weight, keep-mask)})`` of a trained masked model."""
    weights = {n: (m.weight.detach().clone(), keep_mask(m).clone()) for n, m in model.named_modules()
               if keep_mask(m) is not None}
    return history, model.state_dict(), weights


def runs(desc: str = "finetune", checkpoint=None, perturb: bool = False) -> dict:
    """Four runs, the same in one process and under torchrun: the masked net fine-tuned (with a validation
    loader), Feather (unstructured and row-and-column) from the dense net, and the masked net with BatchNorm
    (regenerating collapsed channels); the loaders do not shuffle. ``perturb``: the first model starts with
    other weights and another mask (finetune must replace them by rank 0's)."""
    out = {}
    model = masked()
    if perturb:
        with torch.no_grad():
            trainable_tensor(model[0]).add_(1.0)
            keep_mask(model[0]).logical_not_()
    loader = DataLoader(data(), batch_size=BATCH, shuffle=False)
    val = DataLoader(data(), batch_size=16)
    out["masked"] = result(finetune(model, loader, EPOCHS, lr=0.05, val_loader=val, desc=desc,
                                    checkpoint=checkpoint), model)
    model = net()
    out["feather"] = result(feather(model, loader, sparsity=0.5, epochs=EPOCHS, lr=0.05, progress=False), model)
    model = net()
    out["feather-rc"] = result(feather(model, loader, sparsity=0.5, epochs=EPOCHS, structure="rc", solve_every=3,
                                       lr=0.05, progress=False), model)
    model = masked(batchnorm=True)
    out["batchnorm"] = result(finetune(model, loader, EPOCHS, lr=0.05, regenerate=True, progress=False), model)
    return out


if __name__ == "__main__":
    from rcprune.torch.distributed import init_distributed, rank_and_world

    folder = Path(sys.argv[1])
    device = init_distributed("gloo")
    rank, world = rank_and_world()
    checkpoint = folder / f"checkpoint-rank{rank}.pt"   # rank 0 alone writes: rank 1's never exists
    trained = runs(desc=f"rank{rank}-finetune", checkpoint=checkpoint, perturb=rank == 1)
    try:   # resuming from a file that only rank 0 sees
        finetune(masked(), DataLoader(data(), batch_size=BATCH), EPOCHS, checkpoint=checkpoint, resume=True,
                 progress=False)
        refused = None
    except rcprune.InvalidInstanceError as exc:
        refused = str(exc)
    torch.save({"world": world, "device": device, "runs": trained, "resume": refused}, folder / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()
