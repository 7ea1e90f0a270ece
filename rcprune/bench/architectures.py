"""``rcprune bench architectures``: which torchvision architectures rcprune prunes end to end (issue #19).

Per model (random weights, 10 classes) and sparsity: whether extract, solve, compact and export succeed
(else the stage that failed and its message), the dense and compacted parameters and multiply-adds (counted
by ``torch.utils.flop_counter`` on both models, so grouped and depthwise convs are in them), the kept
weights of the pruned layers, compacted == masked (largest difference relative to the masked output),
the latency speedup (dense and compacted timed round-robin in the same run), and the time to prune (the
wall time of ``prune``: its copy of the model, extract, solve, masking and compact; after one warm-up
prune of a tiny model has compiled or loaded the numba kernels: ``warmup_seconds``) beside
Torch-Pruning's time on the same model in the same run (its ``MagnitudePruner``, L1 importance, per-layer
channel ratio ``1 - sqrt(1 - sparsity)``, which removes about that share of the weights; the classifier
ignored). JSON rows and a Markdown table.

With ``latency_budget`` (issue #19's "at the same latency, more kept importance"): rcprune also prunes
under ``budget="latency"`` asked for Torch-Pruning's measured speedup (``calibrate`` measured rounds), in the
column and the group space; dense, Torch-Pruning and those models are timed in one more interleaved run,
and the kept L1 importance (sum of |w| over the conv and linear weights, BatchNorm not folded) is compared
with Torch-Pruning's: columns ``lat_target``, ``lat_tp_speedup``, ``lat_<space>_speedup``,
``lat_<space>_l1_vs_tp``.
"""
from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["ARCHITECTURES", "QUICK", "bench_architectures", "format_architectures", "write_architectures",
           "run_architectures"]

ARCHITECTURES = ("resnet18", "resnet50", "wide_resnet50_2", "vgg11_bn", "alexnet", "resnext50_32x4d",
                 "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "shufflenet_v2_x0_5",
                 "densenet121", "squeezenet1_0", "googlenet", "convnext_tiny", "vit_b_16")
QUICK = ("mobilenet_v3_small", "shufflenet_v2_x0_5")   # tied convs and squeeze-excitation; a channel shuffle
LATENCY_SPACES = ("column", "group")


def build(name: str, size: int) -> torch.nn.Module:
    """A torchvision model with random weights and 10 classes, in eval mode (``vit_b_16`` at ``size``)."""
    import torchvision

    kwargs = {"num_classes": 10}
    if name == "vit_b_16":
        kwargs["image_size"] = size
    if name == "googlenet":
        kwargs |= {"aux_logits": False, "init_weights": True}
    return getattr(torchvision.models, name)(**kwargs).eval()


def _macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops() // 2 // x.shape[0])


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _classifier(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
            and (getattr(m, "out_features", None) == 10 or getattr(m, "out_channels", None) == 10)]


def torch_pruning_run(model: torch.nn.Module, x: torch.Tensor, sparsity: float) -> tuple[dict, torch.nn.Module | None]:
    """Torch-Pruning on a copy of ``model``: (seconds, parameters after, or the error; the pruned model)."""
    try:
        import torch_pruning as tp
    except ImportError as exc:
        return {"tp_ok": False, "tp_error": f"torch-pruning not installed: {exc}"}, None
    m = copy.deepcopy(model)
    start = time.perf_counter()
    try:
        pruner = tp.pruner.MagnitudePruner(m, x[:1], importance=tp.importance.MagnitudeImportance(p=1),
                                           pruning_ratio=1.0 - math.sqrt(1.0 - sparsity),
                                           ignored_layers=_classifier(m))
        pruner.step()
        with torch.no_grad():
            m(x[:1])
    except Exception as exc:  # noqa: BLE001 -- report whatever Torch-Pruning raises
        return {"tp_ok": False, "tp_error": f"{type(exc).__name__}: {str(exc)[:200]}"}, None
    return {"tp_ok": True, "tp_seconds": time.perf_counter() - start, "tp_params": _params(m)}, m.eval()


def _l1(model: torch.nn.Module) -> float:
    """Sum of |w| over a model's conv and linear weights (its parameters of two or more dimensions)."""
    return float(sum(p.detach().abs().sum() for p in model.parameters() if p.ndim >= 2))


def _at_latency(model: torch.nn.Module, x: torch.Tensor, tp_model: torch.nn.Module, target: float, repeats: int,
                calibrate: int) -> dict:
    """rcprune asked for Torch-Pruning's measured speedup in each of :data:`LATENCY_SPACES`, timed with the
    dense and Torch-Pruning's models in one interleaved run; kept L1 against Torch-Pruning's."""
    from rcprune.torch.compact import compact
    from rcprune.torch.latency import time_forms
    from rcprune.torch.pipeline import prune

    row, timed, tp_l1 = {"lat_target": target}, {"dense": model, "tp": tp_model}, _l1(tp_model)
    for space in LATENCY_SPACES:
        start = time.perf_counter()
        small, report = prune(model, x, budget="latency", speedup=target, granularity=space, calibrate=calibrate)
        row[f"lat_{space}_seconds"] = time.perf_counter() - start
        # the kept weights themselves: compact without folding BatchNorm into them
        plain, _ = compact(copy.deepcopy(model), report.result.solution, report.extraction, fold_batchnorm=False)
        row[f"lat_{space}_l1_vs_tp"] = _l1(plain) / tp_l1
        row[f"lat_{space}_rounds"] = len(report.result.info.get("calibration") or [])
        timed[space] = small
    ms = {k: v["ms"] for k, v in time_forms(timed, x, repeats, threads=torch.get_num_threads()).items()}
    row["lat_tp_speedup"] = ms["dense"] / ms["tp"]
    row |= {f"lat_{space}_speedup": ms["dense"] / ms[space] for space in LATENCY_SPACES}
    return row


def _one(name: str, model: torch.nn.Module, x: torch.Tensor, sparsity: float, *, method: str, weighting: str,
         repeats: int, export: bool, torch_pruning: bool, latency_budget: bool = False, calibrate: int = 6) -> dict:
    from rcprune.torch.export import export as export_model
    from rcprune.torch.latency import time_forms
    from rcprune.torch.masking import apply
    from rcprune.torch.pipeline import prune

    row: dict = {"model": name, "sparsity": sparsity, "params_dense": _params(model), "ok": False}
    tp_model = None
    if torch_pruning:
        tp_row, tp_model = torch_pruning_run(model, x, sparsity)
        row |= tp_row
    stage = "prune"
    try:
        start = time.perf_counter()
        small, report = prune(model, x[:1], sparsity=sparsity, method=method, weighting=weighting)
        row |= {"extract": True, "solve": True, "compact": True, "seconds": time.perf_counter() - start,
                "seconds_by_step": report.seconds, "kept_weights": report.kept_weights, "budget": report.budget,
                "tied_convs": len(report.extraction.tied), "layers": len(report.extraction.layers),
                "params_compact": _params(small)}
        stage = "check"
        masked = apply(copy.deepcopy(model), report.result.solution, report.extraction)
        with torch.no_grad():
            want, got = masked(x), small(x)
        scale = float(want.abs().max())
        row |= {"masked_vs_compact": float((got - want).abs().max()) / max(scale, 1e-30),
                "constant_output": bool(float(want.std()) == 0.0)}
        stage = "macs"
        row |= {"macs_dense": _macs(model, x), "macs_compact": _macs(small, x)}
        if export:
            stage = "export"
            with tempfile.TemporaryDirectory() as tmp:
                rep = export_model(small, x, Path(tmp) / "m.onnx")
            row |= {"export": True, "export_diff": rep.max_abs_diff}
        stage = "latency"   # dense, rcprune's and Torch-Pruning's models round-robin in one run, each in its
        # faster deployable form (as it is, or BatchNorm-fused in channels-last), so a fold is no one's edge
        timed = {"dense": model, "compact": small} | ({"tp": tp_model} if tp_model is not None else {})
        ms = {k: v["ms"] for k, v in time_forms(timed, x, repeats, threads=torch.get_num_threads()).items()}
        row |= {"dense_ms": ms["dense"], "compact_ms": ms["compact"], "speedup": ms["dense"] / ms["compact"],
                "ok": True}
        if tp_model is not None:
            row |= {"tp_ms": ms["tp"], "tp_speedup": ms["dense"] / ms["tp"]}
    except Exception as exc:  # noqa: BLE001 -- the bench reports every failure by stage
        stage = {"prune": _prune_stage(exc)}.get(stage, stage)
        row |= {"failed": stage, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    if latency_budget and row["ok"] and tp_model is not None:
        if row["tp_speedup"] <= 1.0:
            row["lat_error"] = f"Torch-Pruning measured no speedup ({row['tp_speedup']:.3f}x): no latency target"
        else:
            try:
                row |= _at_latency(model, x, tp_model, row["tp_speedup"], repeats, calibrate)
            except Exception as exc:  # noqa: BLE001 -- reported beside the row, which stands without it
                row["lat_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return row


def _warm_up() -> float:
    """Prune a tiny model once, so that the numba kernels are compiled (or loaded from their cache) before
    any model is timed: a one-time cost per process, not a cost of pruning a model. Returns its seconds."""
    from rcprune.torch.pipeline import prune

    start = time.perf_counter()
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    prune(tiny, torch.zeros(1, 3, 4, 4), sparsity=0.5, method="network-greedy")
    return time.perf_counter() - start


def _prune_stage(exc: Exception) -> str:
    text = str(exc)
    return "extract" if ("node '" in text or "trace" in text or "example_inputs" in text) else "solve/compact"


def bench_architectures(models: Sequence[str] = ARCHITECTURES, sparsities: Sequence[float] = (0.5, 0.7), *,
                        size: int = 64, batch: int = 8, method: str = "network-greedy", weighting: str = "none",
                        repeats: int = 5, export: bool = True, torch_pruning: bool = True, seed: int = 0,
                        latency_budget: bool = False, calibrate: int = 6, log=None) -> list[dict]:
    """One row per model and sparsity (see the module docstring); a model that cannot even be built or
    run dense gets one row saying so. ``weighting`` ``"none"`` is :func:`rcprune.torch.prune`'s default;
    the column ``constant_output`` flags a solution that emptied a classifier (then the masked-vs-compact
    comparison compares constants)."""
    warmup = _warm_up()
    rows = []
    for name in models:
        torch.manual_seed(seed)
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
        try:
            model = build(name, size)
            with torch.no_grad():
                model(x[:1])
        except Exception as exc:  # noqa: BLE001
            rows.append({"model": name, "ok": False, "failed": "build", "error": f"{type(exc).__name__}: {exc}"})
            continue
        for sparsity in sparsities:
            row = _one(name, model, x, sparsity, method=method, weighting=weighting, repeats=repeats, export=export,
                       torch_pruning=torch_pruning, latency_budget=latency_budget, calibrate=calibrate)
            rows.append(row | {"warmup_seconds": warmup})
            if log is not None:
                log(format_architectures([row], header=False))
    return rows


_COLUMNS = ("model", "sparsity", "ok", "failed", "params_dense", "params_compact", "kept_weights", "macs_dense",
            "macs_compact", "masked_vs_compact", "constant_output", "export", "speedup", "seconds", "tp_ok",
            "tp_seconds", "tp_params", "tp_speedup")
_LATENCY_COLUMNS = ("lat_target", "lat_tp_speedup") + tuple(
    f"lat_{s}_{k}" for s in LATENCY_SPACES for k in ("speedup", "l1_vs_tp"))


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def format_architectures(rows: list[dict], header: bool = True) -> str:
    """A Markdown table of the rows (the errors listed below it)."""
    lines = []
    columns = _COLUMNS + (_LATENCY_COLUMNS if any("lat_target" in r for r in rows) else ())
    if header:
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    errors = [f"- {r['model']} ({r.get('sparsity')}): {r['failed']}: {r['error']}" for r in rows if r.get("error")]
    errors += [f"- {r['model']} ({r.get('sparsity')}): Torch-Pruning: {r['tp_error']}" for r in rows if r.get("tp_error")]
    errors += [f"- {r['model']} ({r.get('sparsity')}): latency budget: {r['lat_error']}" for r in rows
               if r.get("lat_error")]
    return "\n".join(lines + ([""] + errors if errors and header else errors))


def write_architectures(rows: list[dict], out: str | Path) -> tuple[Path, Path]:
    """``<out>.json`` and ``<out>.md``."""
    out = Path(out)
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    js.write_text(json.dumps(rows, indent=1, default=str))
    md.write_text(format_architectures(rows) + "\n")
    return js, md


def run_architectures(*, quick: bool = False, models: str | None = None, size: int | None = None,
                      batch: int | None = None, repeats: int | None = None, out: str | Path | None = None,
                      sparsities: Sequence[float] | None = None, latency_budget: bool = False, log=print) -> str:
    """What ``rcprune bench architectures [--quick]`` runs: the bench (``--quick``: :data:`QUICK` at 32x32,
    sparsity 0.5; else 0.5 and 0.7 unless ``sparsities``), ``<out>.json`` and ``<out>.md`` written, the
    Markdown table returned."""
    names = QUICK if quick else tuple(models.split(",")) if models else ARCHITECTURES
    sparsities = tuple(sparsities) if sparsities else (0.5,) if quick else (0.5, 0.7)
    rows = bench_architectures(names, sparsities, size=size or (32 if quick else 64),
                               batch=batch or (2 if quick else 8), repeats=repeats or (2 if quick else 5),
                               latency_budget=latency_budget, calibrate=2 if quick else 6, log=log)
    write_architectures(rows, out or "rcprune-architectures")
    return format_architectures(rows)
