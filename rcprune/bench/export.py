"""Export of compacted models: ONNX (run by onnxruntime) and rcprune's torch file (read back with
``weights_only=True``, then traced by ``torch.export``), on torchvision's ResNet-18 and ResNet-50 and the
CIFAR-style ResNet-20, each RC pruned (network-greedy on |w|, ``partial="auto"``) at every sparsity asked.

Random weights with random BatchNorm statistics (so no channel is trivially zero), 10 classes, batch 2 at
the model's input size. Every channel group keeps a floor of ``FLOOR`` of its channels (``min_channels``):
without one, the weight budget's default, |w| of random weights empties ResNet-50's last stage at 90% (one
channel left, dead after its ReLU), and the compacted model's output no longer depends on its input, which
would make the export check vacuous. ``input_dependent`` says whether the two samples' outputs differ. Per row: whether the export (with its check) succeeded, the largest absolute output
difference against the compacted PyTorch model, the file size, the export's seconds, and the error when it
failed. The issue's goal: every row succeeds.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from rcprune.files import atomic_write_bytes
from rcprune.validation import InvalidInstanceError

from rcprune.torch.models import randomize_batchnorm

__all__ = ["run_export_bench", "format_export", "EXPORT_MODELS"]

EXPORT_MODELS = {   # name -> (builder, input shape of one sample)
    "cifar-resnet20": (lambda: _cifar(20), (3, 32, 32)),
    "resnet18": (lambda: _torchvision("resnet18"), (3, 64, 64)),
    "resnet50": (lambda: _torchvision("resnet50"), (3, 64, 64)),
}
FLOOR = 0.1
QUICK_MODELS = {"cifar-resnet8": (lambda: _cifar(8, width=8), (3, 16, 16))}
FORMATS = ("onnx", "torch")


def _cifar(depth: int, width: int = 16) -> torch.nn.Module:
    from rcprune.torch.models import cifar_resnet
    return cifar_resnet(depth=depth, width=width, seed=0)


def _torchvision(name: str) -> torch.nn.Module:
    import torchvision
    return getattr(torchvision.models, name)(num_classes=10)


def _torch_export_diff(path: Path, x: torch.Tensor, expected: torch.Tensor) -> float:
    """Load the torch file back (weights_only), trace it with ``torch.export`` and run the exported program."""
    from rcprune.torch.saved_model import load_compacted
    program = torch.export.export(load_compacted(path).eval(), (x,))
    with torch.no_grad():
        return float((program.module()(x) - expected).abs().max())


def _row(name: str, small: torch.nn.Module, x: torch.Tensor, fmt: str, folder: Path) -> dict:
    from rcprune.torch.export import export
    row: dict = {"format": fmt}
    path = folder / f"{name}.{'onnx' if fmt == 'onnx' else 'pt'}"
    t = time.perf_counter()
    try:
        rep = export(small, x, path, format=fmt)
        row.update(ok=True, max_abs_diff=rep.max_abs_diff, bytes=rep.bytes)
        if fmt == "torch":
            with torch.no_grad():
                row["torch_export_diff"] = _torch_export_diff(path, x, small(x))
    except Exception as exc:   # a failure is a row of the report, not the end of the run
        row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    row["seconds"] = time.perf_counter() - t
    return row


def run_export_bench(out="rcprune-export", *, models: Sequence[str] | None = None,
                     sparsities: Sequence[float] = (0.5, 0.9), formats: Sequence[str] = FORMATS,
                     quick: bool = False, log=print) -> dict:
    """Run the benchmark; writes ``export.json`` and ``export.md`` into ``out`` after every row and returns
    the result (``rows``, ``passed``)."""
    from rcprune.torch.pipeline import prune

    known = QUICK_MODELS if quick else EXPORT_MODELS
    models = list(known) if models is None else [models] if isinstance(models, str) else list(models)
    if not models or any(m not in known for m in models):
        raise InvalidInstanceError(f"models must be some of {', '.join(known)}, got {models!r}")
    if not sparsities or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1
                             for s in sparsities):
        raise InvalidInstanceError(f"sparsities must be a non-empty list of numbers in [0, 1), got {sparsities!r}")
    formats = [formats] if isinstance(formats, str) else list(formats)
    if not formats or any(f not in FORMATS for f in formats):
        raise InvalidInstanceError(f"formats must be some of {', '.join(FORMATS)}, got {formats!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    result: dict = {"config": {"models": models, "sparsities": list(sparsities), "formats": formats, "quick": quick,
                               "torch": torch.__version__}, "rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            build, shape = known[name]
            model = randomize_batchnorm(build())
            x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
            for s in sparsities:
                t = time.perf_counter()
                small, rep = prune(model, x[:1], sparsity=float(s), method="network-greedy", min_channels=FLOOR)
                with torch.no_grad():
                    y = small.eval()(x)
                base = {"model": name, "sparsity": float(s), "kept_weights": rep.weights_after,
                        "input_dependent": bool((y[0] != y[1]).any()), "prune_seconds": time.perf_counter() - t}
                for fmt in formats:
                    row = base | _row(f"{name}-{s:g}", small.eval(), x, fmt, Path(tmp))
                    rows.append(row)
                    log(f"{name} @ {s:g} {fmt}: " + ("ok, max |diff| " + f"{row['max_abs_diff']:.2g}"
                                                    if row["ok"] else row["error"]) + f" ({row['seconds']:.1f} s)")
                    result["passed"] = all(r["ok"] for r in rows)
                    atomic_write_bytes(out / "export.json", json.dumps(result, indent=1).encode())
                    atomic_write_bytes(out / "export.md", format_export(result).encode())
    return result


def format_export(result: dict) -> str:
    lines = ["# Export of compacted models (ONNX via onnxruntime; torch file via load_compacted + torch.export)", "",
             f"torch {result['config']['torch']}; random weights and BatchNorm statistics, batch 2; RC pruned by "
             f"network-greedy with a channel floor of {FLOOR:g}.", "",
             "| model | sparsity | format | ok | max abs diff | torch.export diff | MB | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        diff = f"{r['max_abs_diff']:.2g}" if r.get("max_abs_diff") is not None else "-"
        tex = f"{r['torch_export_diff']:.2g}" if "torch_export_diff" in r else "-"
        mb = f"{r['bytes'] / 1e6:.1f}" if "bytes" in r else "-"
        ok = "yes" if r["ok"] else f"no: {r['error']}"
        lines.append(f"| {r['model']} | {r['sparsity']:g} | {r['format']} | {ok} | {diff} | {tex} | {mb} | "
                     f"{r['seconds']:.1f} |")
    lines += ["", f"Goal (every export succeeds and matches): {'PASS' if result.get('passed') else 'FAIL'}"]
    constant = sorted({f"{r['model']} @ {r['sparsity']:g}" for r in result["rows"] if not r.get("input_dependent", True)})
    if constant:
        lines.append(f"The compacted output does not depend on the input (a vacuous check) for: {', '.join(constant)}")
    return "\n".join(lines) + "\n"
