"""Export a compacted model to a file another runtime or process runs: ONNX, or rcprune's pickle-free
PyTorch file.

``format="onnx"``: the model goes through ``torch.onnx.export`` (the ``torch.export``-based exporter,
``dynamo=True``, which needs the ``onnx`` and ``onnxscript`` packages), one self-contained ``.onnx`` file
(weights inside, so at most 2 GB). Every compacted form of :mod:`rcprune.torch.compact_forms` exports: the
gathers and scatters are ONNX ``Gather`` and ``ScatterND`` ops, channels-last layouts
are transposes. ``format="torch"``: the file of :func:`rcprune.torch.save_compacted`, which
:func:`rcprune.torch.load_compacted` reads back with ``torch.load(weights_only=True)``, rebuilding the
modules; a model that is not a ``torch.fx.GraphModule`` is traced by ``torch.fx.symbolic_trace`` first.

Which models: a compacted model (what :func:`rcprune.torch.compact` returns), or any model the exporter
takes (a dense or baked model exports as it is). A masked model is refused: its file would hold the dense
weights beside the masks; compact it (or bake it to export the dense, masked weights). With ``check=True``
(the default) the file is read back and run on ``example_inputs`` (ONNX by onnxruntime) before it is
written under ``path``, and must match the PyTorch model's outputs: within ``1e-4`` (relative to the
outputs' largest magnitude when that is above 1) for ONNX, exactly for the torch file.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn

from rcprune.files import atomic_write_bytes
from rcprune.validation import InvalidInstanceError, check_flag

from rcprune.torch.masking import is_masked
from rcprune.torch.saved_model import check_path, compacted_payload, rebuild

__all__ = ["export", "ExportReport", "FORMATS", "ONNX_TOLERANCE"]

FORMATS = ("onnx", "torch")
ONNX_TOLERANCE = 1e-4
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export` wrote: the file, its format and size, and, when checked, the largest absolute
    difference between the file's outputs and the model's on ``example_inputs``."""

    path: Path
    format: str
    bytes: int
    max_abs_diff: float | None


def _inputs(example_inputs) -> tuple[torch.Tensor, ...]:
    args = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise InvalidInstanceError("example_inputs must be a tensor or a non-empty tuple of tensors, got "
                                   f"{type(example_inputs).__name__}")
    return tuple(args)


def _leaves(out) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, or tuples, lists and dicts of them), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _leaves(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _leaves(o)]
    raise InvalidInstanceError(f"the model returns a {type(out).__name__}; export needs tensors "
                               "(or tuples, lists, dicts of them)")


def _max_diff(got: list, expected: list[torch.Tensor]) -> float:
    if len(got) != len(expected):
        raise InvalidInstanceError(f"the exported model returns {len(got)} outputs, the model {len(expected)}")
    diff = 0.0
    for g, e in zip(got, expected):
        g = torch.as_tensor(g)
        if tuple(g.shape) != tuple(e.shape):
            raise InvalidInstanceError(f"the exported model returns shape {tuple(g.shape)} where the model "
                                       f"returns {tuple(e.shape)}")
        if e.numel():
            diff = max(diff, (g.to(torch.float64) - e.detach().cpu().to(torch.float64)).abs().max().item())
    return diff


def _reason(exc: BaseException) -> str:
    """The innermost cause of an exporter error, its first lines (the outer ones are advice)."""
    inner = exc
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    text = _ANSI.sub("", str(inner)).strip()
    summary = _ANSI.sub("", str(exc)).split("## Exception summary", 1)
    if inner is exc and len(summary) == 2:
        text = summary[1].strip()
    lines = [ln for ln in text.splitlines() if ln.strip()][:3]
    return f"{type(inner).__name__}: {' '.join(lines)[:600]}"


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines, warnings and retry logs, kept from the user's console."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "torch._dynamo",
                                              "torch.fx.experimental.symbolic_shapes", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """``model`` in eval mode, each module's mode given back afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def _onnx_bytes(model: nn.Module, args: tuple, dynamic_batch: bool, opset: int | None) -> bytes:
    try:
        import onnxscript  # noqa: F401  (the exporter's dependency: say so before it fails deep inside)
        import onnx  # noqa: F401
    except ImportError as exc:
        raise InvalidInstanceError(f"format='onnx' needs the onnx and onnxscript packages ({exc.name} is "
                                   "missing): pip install -e '.[torch]'") from None
    dynamic = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        dynamic = tuple({0: batch} for _ in args)
    try:
        with _quiet():
            program = torch.onnx.export(model, args, dynamo=True, verbose=False, external_data=False,
                                        dynamic_shapes=dynamic, opset_version=opset)
            with tempfile.TemporaryDirectory() as tmp:
                f = Path(tmp) / "model.onnx"
                program.save(f, external_data=False)
                return f.read_bytes()
    except torch.onnx.OnnxExporterError as exc:
        if type(exc).__name__ == "TorchExportError":   # step 1 of 3: torch.export could not trace the model
            raise InvalidInstanceError(f"torch.export cannot trace this model (ONNX export's first step): "
                                       f"{_reason(exc)}") from None
        raise InvalidInstanceError(f"ONNX cannot express this model: {_reason(exc)}") from None
    except Exception as exc:   # torch.export's own errors (dynamic shapes, unsupported Python) and ONNX's size limit
        raise InvalidInstanceError(f"the model does not export to ONNX: {_reason(exc)}") from None


def _run_onnx(data: bytes, args: tuple) -> list:
    try:
        import onnxruntime as ort
    except ImportError:
        raise InvalidInstanceError("check=True runs the ONNX file with onnxruntime, which is not installed: "
                                   "pip install onnxruntime, or pass check=False") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        if len(names) != len(args):
            raise InvalidInstanceError(f"the ONNX file takes {len(names)} inputs, example_inputs has {len(args)}")
        return session.run(None, {n: a.detach().cpu().numpy() for n, a in zip(names, args)})
    except InvalidInstanceError:
        raise
    except Exception as exc:   # onnxruntime's own errors: an op or type it does not implement
        raise InvalidInstanceError(f"onnxruntime cannot run the exported file: {type(exc).__name__}: "
                                   f"{str(exc)[:400]}; nothing was written (check=False writes it)") from None


def _torch_model(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:
        raise InvalidInstanceError(f"format='torch' saves a torch.fx graph, and torch.fx cannot trace this model: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}") from None


def export(model: nn.Module, example_inputs, path: str | Path, format: str = "onnx", *, check: bool = True,
           dynamic_batch: bool = False, opset: int | None = None) -> ExportReport:
    """Write ``model`` to ``path`` as an ONNX file or rcprune's pickle-free PyTorch file.

    Parameters
    ----------
    model : nn.Module
        A compacted model (:func:`rcprune.torch.compact`), or any model the chosen exporter takes. Not
        masked (compact or bake it first). Not modified: ONNX exports it in eval mode (each module's mode
        given back afterwards); the torch file keeps each module's mode.
    example_inputs : tensor or tuple of tensors
        What the model is called with: ONNX fixes the input shapes to theirs (but see
        ``dynamic_batch``); the check runs on them.
    path : str or Path
        Written atomically, and only after the check passed.
    format : "onnx" or "torch"
        ``"onnx"``: a self-contained ONNX file (``onnxruntime.InferenceSession(path)`` runs it).
        ``"torch"``: the file :func:`rcprune.torch.load_compacted` reads back (``torch.load`` with
        ``weights_only=True``; the modules are rebuilt from their recorded classes and attributes); a model
        that is not a ``torch.fx.GraphModule`` is traced with ``torch.fx.symbolic_trace`` first.
    check : bool
        Run the file on ``example_inputs`` before writing it (ONNX with onnxruntime on the CPU) and require
        the model's outputs: within ``1e-4`` times ``max(1, largest output magnitude)`` for ONNX, bit for
        bit for ``"torch"``.
    dynamic_batch : bool
        ONNX: the first dimension of every input (and output) is symbolic, so the file runs at any batch
        size (``example_inputs`` must then have a batch of at least 2). The torch file runs at any shape.
    opset : int, optional
        ONNX opset version (default: the exporter's).

    Returns
    -------
    ExportReport
        The path, format, file size and (with ``check``) the largest absolute output difference measured.

    Raises
    ------
    InvalidInstanceError
        For a masked model, bad options or inputs, a model the exporter cannot express (the message names the
        op or construct, e.g. ``No ONNX function found for ...``), or a file that fails the check.

    Costs one export (ONNX: a ``torch.export`` trace and its translation, seconds for a ResNet) and, with
    ``check``, one run of the model and one of the file.
    """
    if not isinstance(model, nn.Module):
        raise InvalidInstanceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if format not in FORMATS:
        raise InvalidInstanceError(f"format must be 'onnx' or 'torch', got {format!r}")
    check = check_flag(check, "check")
    dynamic_batch = check_flag(dynamic_batch, "dynamic_batch")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 7):
        raise InvalidInstanceError(f"opset must be an ONNX opset version (an int >= 7) or None, got {opset!r}")
    path = check_path(path, writing=True)
    if is_masked(model):
        raise InvalidInstanceError("the model is masked, not compacted: call rcprune.torch.compact(model, solution) "
                                   "and export what it returns (or rcprune.torch.bake(model) to export the dense, "
                                   "masked weights)")
    args = _inputs(example_inputs)
    if dynamic_batch and any(a.dim() == 0 or a.shape[0] < 2 for a in args):
        raise InvalidInstanceError("dynamic_batch needs example_inputs with a batch (first dimension) of at least 2")
    # the torch file keeps each module's mode: described before the model goes to eval mode
    payload = compacted_payload(_torch_model(model)) if format == "torch" else None
    with _eval_mode(model):
        try:
            with torch.no_grad():
                expected = _leaves(model(*args)) if check else None
        except InvalidInstanceError:
            raise
        except Exception as exc:
            raise InvalidInstanceError(f"the model cannot run on example_inputs: {type(exc).__name__}: "
                                       f"{str(exc)[:300]}") from None
        diff = None
        if format == "onnx":
            data = _onnx_bytes(model, args, dynamic_batch, opset)
            if check:
                diff = _max_diff(_run_onnx(data, args), expected)
                scale = max(1.0, max((e.abs().max().item() for e in expected if e.numel()), default=0.0))
                if not diff <= ONNX_TOLERANCE * scale:   # also NaN
                    raise InvalidInstanceError(
                        f"the ONNX file's outputs differ from the model's by {diff:.3g} on example_inputs "
                        f"(tolerance {ONNX_TOLERANCE * scale:.3g}); nothing was written")
        else:
            if check:
                with torch.no_grad():
                    diff = _max_diff(_leaves(rebuild(payload).eval()(*args)), expected)
                if diff != 0.0:   # also NaN
                    raise InvalidInstanceError(f"the rebuilt model's outputs differ from the model's by {diff:.3g} "
                                               "on example_inputs; nothing was written")
            buf = io.BytesIO()
            torch.save(payload, buf)
            data = buf.getvalue()
    written = atomic_write_bytes(path, data)
    return ExportReport(written, format, len(data), diff)
