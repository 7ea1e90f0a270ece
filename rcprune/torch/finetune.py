"""Fine-tuning with the masks fixed: a masked module's ``weight`` is its trainable values with the pruned
entries set to zero, recomputed on every forward (:mod:`rcprune.torch.rcmask`), so pruned weights stay
exactly zero whatever the optimizer does; the stored originals are not trained. With
``sparse_training="feather"`` (or :func:`feather`) the mask is learned during training instead
(:mod:`rcprune.torch.feather`) and fixed at the end. Under ``torchrun`` (a process group initialized) it
trains data-parallel (:mod:`rcprune.torch.distributed`).

>>> import torch
>>> from torch.utils.data import DataLoader, TensorDataset
>>> data = DataLoader(TensorDataset(torch.randn(8, 3), torch.tensor([0, 1] * 4)), batch_size=4)
>>> hist = finetune(torch.nn.Linear(3, 2), data, epochs=1, progress=False)
>>> sorted(hist[0])
['accuracy', 'epoch', 'loss', 'lr', 'val_accuracy']
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from rcprune.torch.batches import check_loader, labelled_batch
from rcprune.torch.checkpoint import check_checkpoint_path, resume_from, save_checkpoint
from rcprune.torch.distill import DistillationLoss
from rcprune.torch.extract import extraction_of
from rcprune.torch.feather import FeatherConfig, FeatherTraining, sparse_training_of
from rcprune.torch.feather_rc import RCFeatherTraining
from rcprune.torch.distributed import (all_sum, average_batchnorm_statistics, data_parallel, eval_loader_for,
                                       is_distributed, rank_and_world, train_loader_for)
from rcprune.torch.regenerate import regenerate_channels
from rcprune.validation import InvalidInstanceError, check_flag, check_nonnegative

__all__ = ["finetune", "evaluate_accuracy", "feather"]


@torch.no_grad()
def _correct_total(model: nn.Module, loader, device: str) -> tuple[int, int]:
    was = model.training
    model.eval()
    correct = total = 0
    for batch in check_loader(loader, "loader"):
        x, y = labelled_batch(batch, "loader")
        out = model(x.to(device))
        correct += int((out.argmax(1) == y.to(device)).sum())
        total += int(y.shape[0])
    model.train(was)
    return correct, total


def evaluate_accuracy(model: nn.Module, loader, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``loader``; the model's mode is restored after. This process's
    alone under ``torch.distributed`` (finetune's ``val_accuracy`` is over all processes)."""
    correct, total = _correct_total(model, loader, device)
    return correct / max(total, 1)


def finetune(model: nn.Module, train_loader, epochs: int, *, optimizer: torch.optim.Optimizer | None = None,
             lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, schedule: str | None = "cosine",
             val_loader=None, device: str = "cpu", loss_fn: Callable | None = None, seed: int = 0,
             teacher: nn.Module | None = None, temperature: float = 4.0, alpha: float = 0.5,
             regenerate: bool = False, extraction=None, sparse_training=None, sparsity: float | None = None,
             progress: bool = True, desc: str = "finetune", checkpoint=None, resume: bool = False,
             distributed: bool | None = None, find_unused_parameters: bool = False) -> list[dict]:
    """Train ``model`` (masked or not) for ``epochs`` epochs; returns one dict per epoch.

    Parameters
    ----------
    model : nn.Module
        Trained in place on ``device``.
    train_loader : iterable of (inputs, targets)
    epochs : int
    optimizer : torch.optim.Optimizer, optional
        Default: SGD with ``lr``, ``momentum``, ``weight_decay`` (Nesterov).
    schedule : "cosine", "step" or None
        Learning-rate schedule over the epochs (cosine annealing to 0; step: x0.1 at 50% and 75%).
    val_loader : optional
        Evaluated after every epoch (``val_accuracy``; None without it).
    seed : int
        Seeds torch's global generator (dropout, default shuffling) and the loader's own generator, if
        it has one, before training: the same seed gives the same batches.
    teacher, temperature, alpha
        Distillation from ``teacher`` (e.g. the dense model; eval mode, never trained): the loss becomes
        :class:`rcprune.torch.distill.DistillationLoss` with this temperature and weight instead of
        cross-entropy. Not with ``loss_fn``.
    regenerate : bool
        After every epoch, re-initialize the live channels whose BatchNorm scale and gradient collapsed
        (:func:`rcprune.torch.regenerate.regenerate_channels`; the model's extraction, or ``extraction``,
        says which layers produce each BatchNorm's channels); ``regenerated`` in each epoch's record.
    sparse_training : "feather", FeatherConfig or None
        Learn an unstructured mask while training (:mod:`rcprune.torch.feather`) instead of keeping the
        model's masks fixed: the model (unmasked on its prunable layers) ends masked at ``sparsity``.
        ``"feather"`` takes the paper's schedule; a :class:`rcprune.torch.feather.FeatherConfig` sets it.
        Needs a ``train_loader`` with a length; its first batch is checked against the model before any
        step. Not with ``regenerate``.
    sparsity : float, optional
        The final sparsity of ``sparse_training="feather"``.
    progress : bool
        One progress bar per epoch (running loss and accuracy), on rank 0 only under ``torch.distributed``;
        False: silent.
    checkpoint : str or os.PathLike, optional
        After every epoch the model's, optimizer's and schedule's state and the history so far are written
        there, atomically (rank 0 only); :func:`rcprune.torch.checkpoint.load_checkpoint` reads it.
    resume : bool
        Go on from ``checkpoint`` if that file exists (else start): the model, optimizer, schedule and history
        after its last epoch are loaded (on every process: a file system they share) and training runs the
        remaining epochs of the same ``epochs``. It continues the uninterrupted run exactly when the loader
        does not shuffle or shuffles by a ``DistributedSampler`` (its order depends on ``seed`` and the
        epoch only) and nothing random (dropout) runs; not with ``sparse_training``.
    distributed : bool or None
        None (default): train data-parallel exactly when a ``torch.distributed`` process group is initialized.
        False: train this process's model alone on its whole loader even inside a process group (e.g. each
        process fine-tunes its own candidate); each process then seeds with ``seed`` itself, shows its own
        progress and writes its own ``checkpoint=`` (give each process its own path). True: require a process group (an error names the missing
        ``init_distributed`` call instead of silently training alone).
    find_unused_parameters : bool
        Passed to ``DistributedDataParallel``: set it when some trainable parameters get no gradient in a
        step (a branch the forward pass skips); the default (False) is DDP's faster path, and a model that
        needs it fails with an error naming this option.

    Returns
    -------
    list of dict
        ``epoch``, ``loss`` (mean over samples), ``accuracy`` (training, running), ``val_accuracy``, ``lr``,
        with ``regenerate`` the channels regenerated per BatchNorm (``regenerated``), with ``sparse_training``
        the target ``sparsity`` and ``threshold`` of the epoch's last step and ``mask_frozen``.

    Notes
    -----
    With ``torch.distributed`` initialized (a ``torchrun`` launch; :func:`rcprune.torch.distributed.init_distributed`
    starts it) the model is trained in ``DistributedDataParallel``: ``train_loader`` must be a DataLoader, whose
    ``batch_size`` is the global batch (divisible by the number of processes W; each takes ``batch_size / W``
    of it through a ``DistributedSampler`` seeded with ``seed``), unless it has a ``DistributedSampler`` of
    its own (then its batch size is per process). Every process returns the same history (loss and
    accuracies summed over the processes) and its ``model`` trained in place, identical on every process
    (parameters by DDP, BatchNorm running statistics averaged after every epoch; BatchNorm normalizes with
    each process's batch unless converted to ``SyncBatchNorm``). Each process seeds torch with ``seed + rank``.
    Feather's global threshold is computed on every process from the synchronized weights, so it is the
    same everywhere; its learned allocation (``allocation="learned"``) is refused.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InvalidInstanceError(f"epochs must be a non-negative integer, got {epochs!r}")
    check_loader(train_loader, "train_loader")
    if val_loader is not None:
        check_loader(val_loader, "val_loader")
    for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        check_nonnegative(value, name)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise InvalidInstanceError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not isinstance(model, nn.Module):
        raise InvalidInstanceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if schedule not in ("cosine", "step", None):
        raise InvalidInstanceError(f"schedule must be 'cosine', 'step' or None, got {schedule!r}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise InvalidInstanceError("give finetune the model itself, not a DistributedDataParallel: under "
                                   "torch.distributed it wraps the model and returns it trained in place")
    if checkpoint is not None:
        checkpoint = check_checkpoint_path(checkpoint)
    if check_flag(resume, "resume") and checkpoint is None:
        raise InvalidInstanceError("resume=True goes on from checkpoint=: give the checkpoint's path")
    if teacher is not None and loss_fn is not None:
        raise InvalidInstanceError("give teacher= (distillation) or loss_fn=, not both")
    distill = DistillationLoss(teacher, temperature=temperature, alpha=alpha) if teacher is not None else None
    loss_fn_given, loss_fn = loss_fn, loss_fn or nn.CrossEntropyLoss()
    config = sparse_training_of(sparse_training, sparsity)
    if check_flag(regenerate, "regenerate"):
        if config is not None:
            raise InvalidInstanceError("regenerate= works on fixed masks: not with sparse_training=")
        extraction = extraction_of(model, extraction)
    if resume and config is not None:
        raise InvalidInstanceError("resume=True is not supported with sparse_training= (its schedule and mask are not "
                                   "in the checkpoint)")
    if distributed is not None:
        distributed = check_flag(distributed, "distributed")
        if distributed and not is_distributed():
            raise InvalidInstanceError("distributed=True needs an initialized torch.distributed process group: launch "
                                       "with torchrun and call rcprune.torch.init_distributed() first")
    distributed = is_distributed() if distributed is None else distributed
    find_unused_parameters = check_flag(find_unused_parameters, "find_unused_parameters")
    rank = rank_and_world()[0] if distributed else 0
    if distributed:
        if config is not None and config.allocation == "learned":
            raise InvalidInstanceError("allocation='learned' is not supported under torch.distributed: its per-layer "
                                       "scales are parameters that leave the model when the mask freezes, which "
                                       "DistributedDataParallel cannot follow; use allocation='global'")
        train_loader = train_loader_for(train_loader, seed)
        if val_loader is not None:
            val_loader = eval_loader_for(val_loader)
    sparse = None if config is None else (RCFeatherTraining if config.structure == "rc" else FeatherTraining)(
        config, model, train_loader, epochs)
    if sparse is not None:
        sparse.probe(model, train_loader, device, check_labels=distill is not None or loss_fn_given is None)
    torch.manual_seed(seed + rank)
    if getattr(train_loader, "generator", None) is not None:   # the same shuffling order for every run
        train_loader.generator.manual_seed(seed + rank)
    model.to(device)
    if distill is not None:
        distill.teacher.to(device)
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                                    nesterov=momentum > 0)
    steps = max(epochs, 1)
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    elif schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, [steps // 2, (3 * steps) // 4], 0.1)
    else:
        sched = None
    history = []
    if resume and _checkpoint_found(checkpoint, distributed, device):
        history = resume_from(checkpoint, model, optimizer, sched, epochs)
    if sparse is not None:
        sparse.install(optimizer)
    try:
        net = data_parallel(model, find_unused_parameters=find_unused_parameters) if distributed else model
        _train(model, net, train_loader, epochs, optimizer, sched, loss_fn, distill, sparse, val_loader, device,
               regenerate, extraction, seed, progress and rank == 0, desc, history,
               checkpoint if rank == 0 else None)
    except BaseException as exc:
        if sparse is not None:
            sparse.abort()
        if isinstance(exc, RuntimeError) and distributed and not find_unused_parameters \
                and "find_unused_parameters" in str(exc):
            raise InvalidInstanceError("some trainable parameters got no gradient in a step under "
                                       "DistributedDataParallel (a branch the forward pass skips): give "
                                       "finetune(find_unused_parameters=True)") from exc
        raise
    if sparse is not None:
        sparse.freeze()   # freeze=0: the mask is fixed after the last step
    model.eval()
    return history


def _checkpoint_found(path, distributed: bool, device) -> bool:
    """Whether the checkpoint to resume from exists; under torch.distributed, on every process or on none."""
    found = path.exists()
    if distributed:
        world = rank_and_world()[1]
        count = round(all_sum([found], device)[0])
        if count not in (0, world):
            raise InvalidInstanceError(f"checkpoint {str(path)!r} exists on {count} of the {world} processes: resume "
                                       "needs it on a file system they share")
    return found


def _train(model, net, train_loader, epochs, optimizer, sched, loss_fn, distill, sparse, val_loader, device, regenerate,
           extraction, seed, progress, desc, history, checkpoint) -> None:
    """The epochs; ``net`` is ``model`` or its DistributedDataParallel wrapper (then the metrics are summed
    over the processes)."""
    distributed = net is not model
    for epoch in range(len(history), epochs):
        if hasattr(getattr(train_loader, "sampler", None), "set_epoch"):   # a DistributedSampler's shuffling
            train_loader.sampler.set_epoch(epoch)
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"{desc} {epoch + 1}/{epochs}", leave=False, disable=not progress)
        for batch in bar:
            x, y = labelled_batch(batch, "train_loader")
            x, y = x.to(device), y.to(device)
            if sparse is not None:
                sparse.before_step()
            optimizer.zero_grad(set_to_none=True)
            out = net(x)
            loss = distill(out, y, x) if distill is not None else loss_fn(out, y)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * y.shape[0]
            correct += int((out.argmax(1) == y).sum())
            seen += int(y.shape[0])
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
        current_lr = optimizer.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        if distributed:
            average_batchnorm_statistics(model)   # before evaluating: the same model on every process
        val_correct, val_total = _correct_total(model, val_loader, device) if val_loader is not None else (0, 0)
        if distributed:
            total_loss, correct, seen, val_correct, val_total = all_sum(
                (total_loss, correct, seen, val_correct, val_total), device)
        val = val_correct / max(val_total, 1) if val_loader is not None else None
        record = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1),
                  "val_accuracy": val, "lr": current_lr}
        if regenerate:
            record["regenerated"] = regenerate_channels(model, extraction, seed=seed + epoch)
        if sparse is not None:
            record.update(sparse.record())
        history.append(record)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, history, epochs=epochs, scheduler=sched)


def feather(model: nn.Module, train_loader, sparsity: float, epochs: int, *, initial_sparsity: float = 0.0,
            ramp_start: float = 0.0, ramp_end: float = 0.5, freeze: float | None = None, grad_scale: float | None = None,
            p: float = 3.0, layers=None, structure: str = "unstructured", solve_every: int = 10,
            method: str = "network-greedy", min_density: float = 0.05, allocation: str = "global", distribution: str = "laplace",
            scale_lr: float = 10.0, **finetune_options) -> list[dict]:
    """Train ``model`` in place with Feather to ``sparsity`` in ``epochs`` epochs; it ends masked.

    The same as ``finetune(model, train_loader, epochs, sparse_training=FeatherConfig(sparsity, ...))``
    (:func:`finetune`, whose other options, ``lr``, ``teacher``, ``seed``, ... pass through); see
    :class:`rcprune.torch.feather.FeatherConfig` for the schedule's settings. Returns the per-epoch history,
    whose records also carry ``sparsity`` (the target of the epoch's last step), ``threshold`` (its tau),
    ``mask_frozen`` and (unstructured) ``layer_sparsity``.

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from rcprune.torch.rcmask import keep_mask
    >>> g = torch.Generator().manual_seed(0)
    >>> data = DataLoader(TensorDataset(torch.randn(32, 8, generator=g), torch.arange(32) % 2), batch_size=8)
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> hist = feather(net, data, sparsity=0.75, epochs=2, progress=False)
    >>> hist[-1]["sparsity"], hist[-1]["mask_frozen"], int(keep_mask(net[0]).sum() + keep_mask(net[2]).sum())
    (0.75, True, 40)
    """
    config = FeatherConfig(sparsity=sparsity, initial_sparsity=initial_sparsity, ramp_start=ramp_start,
                           ramp_end=ramp_end, freeze=freeze, grad_scale=grad_scale, p=p, layers=layers,
                           structure=structure, solve_every=solve_every, method=method, min_density=min_density,
                           allocation=allocation,
                           distribution=distribution, scale_lr=scale_lr)
    if "sparse_training" in finetune_options:
        raise InvalidInstanceError("feather() sets sparse_training itself")
    return finetune(model, train_loader, epochs, sparse_training=config, **finetune_options)
