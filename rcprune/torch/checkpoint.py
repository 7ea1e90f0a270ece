"""Fine-tuning checkpoints: the model's, optimizer's and schedule's state after an epoch, with the history so
far, in one file written atomically (:func:`rcprune.files.atomic_write_bytes`) and read with
``torch.load(weights_only=True)`` (tensors, numbers and strings only: nothing else is unpickled);
``finetune(checkpoint=path, resume=True)`` goes on from it (:func:`resume_from`).

>>> import tempfile, torch
>>> net = torch.nn.Linear(2, 1)
>>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
>>> path = save_checkpoint(tempfile.mkdtemp() + "/ft.pt", net, opt, [{"epoch": 1, "loss": 0.5}], epochs=3)
>>> state = load_checkpoint(path)
>>> state["epoch"], sorted(state["model"])
(1, ['bias', 'weight'])
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from rcprune.files import atomic_write_bytes
from rcprune.validation import InvalidInstanceError

__all__ = ["save_checkpoint", "load_checkpoint", "resume_from", "check_checkpoint_path", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "rcprune-finetune-checkpoint"
KEYS = ("format", "version", "epoch", "epochs", "model", "optimizer", "scheduler", "history")


def check_checkpoint_path(path) -> Path:
    """``path`` as a Path (a str or os.PathLike naming a file, not a folder)."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InvalidInstanceError(f"checkpoint must be a file path (str or os.PathLike), got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise InvalidInstanceError(f"checkpoint {str(path)!r} is a folder: give a file path")
    return path


def save_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer, history: list[dict], *,
                    epochs: int, scheduler=None) -> Path:
    """Write the state after ``len(history)`` of ``epochs`` epochs to ``path`` atomically; returns the path.

    The file holds ``model`` (its ``state_dict``: a masked model's masks and stored originals too, so it
    loads into a model masked the same way), ``optimizer`` and ``scheduler`` (their ``state_dict``, the
    scheduler's None without one), ``history``, ``epoch`` (done) and ``epochs`` (of the run).
    """
    state = {"format": CHECKPOINT_FORMAT, "version": 1, "epoch": len(history), "epochs": epochs,
             "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": None if scheduler is None else scheduler.state_dict(),
             "history": history}
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(check_checkpoint_path(path), buf.getvalue())


def load_checkpoint(path, map_location="cpu") -> dict:
    """The dict :func:`save_checkpoint` wrote (tensors on ``map_location``); a file that is missing, not a
    checkpoint, or would need unpickling of anything but tensors and plain data is refused."""
    path = check_checkpoint_path(path)
    if not path.is_file():
        raise InvalidInstanceError(f"checkpoint file {str(path)!r} does not exist")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise InvalidInstanceError(f"corrupt checkpoint file {str(path)!r}: not a torch.save (zip) archive")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InvalidInstanceError(f"refusing checkpoint file {str(path)!r}: it holds more than tensors and plain data "
                                   f"({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise InvalidInstanceError(f"corrupt checkpoint file {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InvalidInstanceError(f"{str(path)!r} is not an rcprune fine-tuning checkpoint")
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise InvalidInstanceError(f"corrupt checkpoint file {str(path)!r}: missing {', '.join(missing)}")
    return state


def resume_from(path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, epochs: int) -> list[dict]:
    """Load the checkpoint at ``path`` into ``model``, ``optimizer`` and ``scheduler`` (in place) and return its
    history: the epochs already done. A run of another length (its schedule would differ), or a model,
    optimizer or schedule the saved state does not fit, is refused."""
    device = next(iter(model.state_dict().values()), torch.zeros(())).device
    state = load_checkpoint(path, map_location=device)
    if state["epochs"] != epochs:
        raise InvalidInstanceError(f"checkpoint {str(path)!r} is of a run of {state['epochs']} epochs: resume it with "
                                   f"epochs={state['epochs']}, not {epochs}")
    if (state["scheduler"] is None) != (scheduler is None):
        raise InvalidInstanceError(f"checkpoint {str(path)!r} was written {'without' if scheduler else 'with'} a "
                                   "learning-rate schedule: resume it with the same schedule=")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InvalidInstanceError(f"checkpoint {str(path)!r} does not fit this model and optimizer (a masked model "
                                   f"needs the same masking first): {str(exc).splitlines()[0]}") from None
    return list(state["history"])
