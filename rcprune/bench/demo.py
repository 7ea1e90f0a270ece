"""``rcprune demo``: train a CIFAR-style ResNet on digits, prune it with RC methods and baselines at equal
kept weights, refit, fine-tune all the same number of epochs, and report accuracy, size and CPU latency.

Rows: the RC methods (``network-greedy``; ``local-sa``: network annealing with in-layer row/column swaps
only; ``neighbour-sa``: network annealing with every move kind) on an instance of L1 scores with layer
weighting ``"none"``; their zero-shot accuracy is measured after a least-squares refit, but fine-tuning
starts from the masked trained weights (the refit inflates the kept weights' norms and fine-tunes worse:
docs/report-card.md has the numbers); Torch-Pruning L1 channel pruning (global and per-layer ratios, at
the RC budget's kept weights; skipped when ``torch-pruning`` is missing); global unstructured magnitude
pruning (accuracy only). The latency of every timed model is also split by kind of op (conv and
GEMM, BatchNorm, add and ReLU, channel gathers and scatters), which shows where RC's models lose time.
Files written to ``out``: ``results.json``, ``results.md``, ``accuracy_vs_sparsity.png``,
``layer_allocation.png`` and the cached dense weights.
"""
from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import prune

from rcprune.files import atomic_write_bytes
from rcprune.network.model import WEIGHTINGS, NetworkSolution
from rcprune.validation import InvalidInstanceError

from rcprune.torch.compact import compact
from rcprune.torch.data import digits_loaders
from rcprune.torch.extract import extract
from rcprune.torch.finetune import evaluate_accuracy, finetune
from rcprune.torch.latency import BREAKDOWN_CATEGORIES, latency_breakdown, measure_latency
from rcprune.torch.masking import apply
from rcprune.torch.models import cifar_resnet
from rcprune.torch.rcmask import keep_mask
from rcprune.torch.refit import ls_refit

__all__ = ["run_demo", "RC_METHODS", "DEFAULT_WEIGHTING", "format_markdown", "format_breakdown", "prune_rc"]

# The layer weighting of the demo's RC instances: measured best of none / total / mean after fine-tuning
# (docs/report-card.md).
DEFAULT_WEIGHTING = "none"

# label -> (network method, options)
RC_METHODS = {
    "rc-greedy": ("network-greedy", {}),
    "rc-local-sa": ("network-annealing", {"mix": (1.0, 1.0, 0.0, 0.0, 0.0)}),
    "rc-neighbour-sa": ("network-annealing", {}),
}


def _prunable_weights(model: nn.Module) -> dict[str, int]:
    """Non-zero-structure weight counts of every conv / linear (masked entries excluded)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            mask = keep_mask(m)
            out[name] = int(m.weight.numel()) if mask is None else int(mask.count_nonzero())
    return out


def _save_state(model: nn.Module, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def run_seed(seeds, dense_seed: int | None = None) -> int:
    """A report card's base seed: it trains the dense model (and names its cache file) and orders the data
    the runs share. The first of ``seeds`` unless ``dense_seed`` is given: a run split by seeds over
    processes passes one ``dense_seed`` so that every part uses the same dense model."""
    if dense_seed is None:
        return int(list(seeds)[0])
    if isinstance(dense_seed, bool) or not isinstance(dense_seed, (int, np.integer)) or dense_seed < 0:
        raise InvalidInstanceError(f"dense_seed must be a non-negative integer, got {dense_seed!r}")
    return int(dense_seed)


def _dense_model(out: Path, cfg: dict, train, test, log) -> tuple[nn.Module, dict]:
    key = "dense-d{depth}-w{width}-s{size}-e{train_epochs}-seed{seed}.pt".format(**cfg)
    if cfg.get("dataset", "digits") != "digits":   # digits keeps its old name: existing caches still load
        key = f"{cfg['dataset']}-{key}"
    path = out / key
    model = cifar_resnet(cfg["depth"], cfg["width"], 1, 10, seed=cfg["seed"])
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        log(f"loaded the trained dense model from {path}")
        return model.eval(), {"cached": True, "train_seconds": 0.0}
    t = time.perf_counter()
    finetune(model, train, cfg["train_epochs"], lr=0.1, seed=cfg["seed"], desc="train dense",
             progress=cfg["progress"])
    _save_state(model, path)
    log(f"trained the dense model ({time.perf_counter() - t:.0f} s), cached at {path}")
    return model.eval(), {"cached": False, "train_seconds": time.perf_counter() - t}


def _tp_prune(dense: nn.Module, example: torch.Tensor, target: int, global_pruning: bool, steps: int = 12):
    """Torch-Pruning L1 channel pruning with the ratio whose kept conv/linear weights are the largest
    not above ``target`` (bisection, ``steps`` halvings)."""
    import torch_pruning as tp

    def pruned(ratio: float) -> nn.Module:
        m = copy.deepcopy(dense)
        pruner = tp.pruner.MagnitudePruner(m, example, importance=tp.importance.MagnitudeImportance(p=1),
                                           pruning_ratio=ratio, global_pruning=global_pruning,
                                           ignored_layers=[m.fc])
        pruner.step()
        return m

    lo, hi, best = 0.0, 0.99, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        m = pruned(mid)
        if sum(_prunable_weights(m).values()) <= target:
            best, hi = m, mid
        else:
            lo = mid
    return best if best is not None else pruned(hi)


def prune_rc(dense: nn.Module, solution: NetworkSolution, ext, calib, test, refit_before_finetune: bool = False):
    """The RC-pruned copy of ``dense`` to fine-tune, with its refit report and its accuracies masked and
    zero-shot (after a least-squares refit). Without ``refit_before_finetune`` the returned model holds
    the trained weights under the masks (the refit is run on a copy, for the zero-shot accuracy only)."""
    model = apply(copy.deepcopy(dense), solution, ext)
    acc_masked = evaluate_accuracy(model, test)
    refitted = model if refit_before_finetune else apply(copy.deepcopy(dense), solution, ext)
    refit = ls_refit(refitted, solution, calib, extraction=ext)
    acc0 = evaluate_accuracy(refitted, test)
    return model, refit, acc_masked, acc0


def _magnitude(dense: nn.Module, target: int) -> nn.Module:
    m = copy.deepcopy(dense)
    params = [(mod, "weight") for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    total = sum(mod.weight.numel() for mod, _ in params)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=int(total - target))
    return m


def format_markdown(rows: list[dict], header: str = "") -> str:
    cols = ["sparsity", "method", "kept_weights", "macs", "acc_zero_shot", "acc_finetuned", "latency_ms",
            "speedup", "solve_seconds", "note"]
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def format_breakdown(breakdown: dict[str, dict[str, float]]) -> str:
    """The latency split per model as a Markdown table (profiled ms per forward)."""
    cols = list(BREAKDOWN_CATEGORIES) + ["total"]
    lines = ["Where the time goes (ms per forward under the profiler, which adds overhead; batch 64):", "",
             "| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {key} | " + " | ".join(f"{split[c]:.3f}" for c in cols) + " |" for key, split in breakdown.items()]
    return "\n".join(lines) + "\n"


def _save_png(plt, fig, path: Path) -> str:
    """Write ``fig`` to ``path`` atomically as a PNG, close it and return the file name."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def _plots(out: Path, rows: list[dict], allocation: dict) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "dense"):
        pts = sorted((r["sparsity"], r["acc_finetuned"]) for r in rows if r["method"] == method
                     and r["acc_finetuned"] is not None)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=method)
    ax.set_xlabel("sparsity (pruned conv/linear weights)")
    ax.set_ylabel("test accuracy after fine-tuning")
    ax.legend(fontsize=7)
    written.append(_save_png(plt, fig, out / "accuracy_vs_sparsity.png"))
    if allocation:
        fig, ax = plt.subplots(figsize=(9, 4))
        names = list(next(iter(allocation.values())))
        width = 0.8 / len(allocation)
        for k, (method, dens) in enumerate(allocation.items()):
            ax.bar(np.arange(len(names)) + k * width, [dens.get(n, 0.0) for n in names], width, label=method)
        ax.set_xticks(np.arange(len(names)) + 0.4, names, rotation=90, fontsize=6)
        ax.set_ylabel("kept fraction of the layer's weights")
        ax.legend(fontsize=7)
        written.append(_save_png(plt, fig, out / "layer_allocation.png"))
    return written


def run_demo(out: str | Path = "rcprune-demo", *, seed: int = 0, epochs: int = 5, train_epochs: int = 15,
             sparsities=(0.9, 0.93), quick: bool = False, methods=None, progress: bool = True,
             weighting: str = DEFAULT_WEIGHTING, refit_before_finetune: bool = False, retention: bool = True,
             log=print) -> dict:
    """Run the demo and write its table and plots to ``out``; returns the results (also ``results.json``).

    ``quick``: a smoke run (ResNet-8 of width 8, one training and one fine-tuning epoch, the first sparsity,
    short annealing). Same seed and configuration: the same masks and training order (accuracies can still
    move in the last digit across machines and thread counts). ``weighting``: the layer weighting of the RC
    instance (:data:`rcprune.network.model.WEIGHTINGS`). ``refit_before_finetune``: fine-tune the RC models from
    their least-squares refit instead of from the masked trained weights (the zero-shot column is the
    refit's either way). ``retention``: at the first sparsity, add the small-weight retention rows
    (per-row magnitude vs data-aware retention, with and without refit; unstructured, accuracy only).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InvalidInstanceError(f"epochs must be a non-negative integer, got {epochs!r}")
    for s in sparsities:
        if not (isinstance(s, (int, float)) and 0 < s < 1):
            raise InvalidInstanceError(f"sparsities must be in (0, 1), got {s!r}")
    if weighting not in WEIGHTINGS:
        raise InvalidInstanceError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"depth": 20, "width": 16, "size": 8, "train_epochs": train_epochs, "seed": seed, "progress": progress}
    if quick:
        cfg.update(depth=8, width=8, train_epochs=1)
        epochs, sparsities = min(epochs, 1), tuple(sparsities)[:1]
    torch.manual_seed(seed)
    train, test = digits_loaders(cfg["size"], seed=seed)
    calib = [b for _, b in zip(range(4), train)]
    example = next(iter(test))[0][:1]
    bench_x = torch.cat([x for x, _ in test])[:64]
    dense, dense_info = _dense_model(out, cfg, train, test, log)
    dense_acc = evaluate_accuracy(dense, test)
    rows = [{"sparsity": 0.0, "method": "dense", "kept_weights": sum(_prunable_weights(dense).values()),
             "macs": None, "acc_zero_shot": dense_acc, "acc_finetuned": dense_acc, "latency_ms": None}]
    log(f"dense ResNet-{cfg['depth']} (width {cfg['width']}): test accuracy {dense_acc:.4f}")
    models_for_latency = {"dense": copy.deepcopy(dense)}
    allocation: dict[str, dict[str, float]] = {}
    try:
        import torch_pruning  # noqa: F401
        have_tp = True
    except ImportError:
        have_tp = False
        log("torch-pruning is not installed (pip install 'rcprune[bench]'): skipping the channel-pruning baselines")
    selected = dict(RC_METHODS) if methods is None else {k: RC_METHODS[k] for k in methods}
    import rcprune

    for sparsity in sparsities:
        ext = extract(dense, example, sparsity=sparsity, weighting=weighting)
        target = ext.instance.budget
        for label, (method, opts) in selected.items():
            opts = dict(opts)
            if method == "network-annealing":
                opts["moves"] = 20000 if quick else 400000
            t = time.perf_counter()
            try:
                res = rcprune.solve(ext.instance, method=method, seed=seed, **opts)
            except InvalidInstanceError as exc:
                log(f"{label}: skipped ({exc})")
                rows.append({"sparsity": sparsity, "method": label, "note": f"skipped: {exc}"})
                continue
            solve_s = time.perf_counter() - t
            model, refit, acc_masked, acc0 = prune_rc(dense, res.solution, ext, calib, test,
                                                      refit_before_finetune)
            hist = finetune(model, train, epochs, lr=0.01, seed=seed, desc=f"{label} s={sparsity}", progress=progress)
            acc1 = evaluate_accuracy(model, test)
            small, rep = compact(model, res.solution, ext)
            key = f"{label}@{sparsity}"
            models_for_latency[key] = small
            if sparsity == sparsities[0]:
                allocation[label] = {le.name: le.density for le in res.evaluation.layers}
            rows.append({"sparsity": sparsity, "method": label, "kept_weights": rep.weights_after,
                         "macs": rep.macs_after, "acc_masked": acc_masked, "acc_zero_shot": acc0,
                         "acc_finetuned": acc1, "solve_seconds": solve_s, "cost": res.cost,
                         "dead_channels": sum(len(v) for v in res.evaluation.dead_channels.values()),
                         "refit_mean_error": float(np.mean([r["error_after"] for r in refit.layers])),
                         "history": hist, "latency_key": key})
            log(f"{label} s={sparsity}: kept {rep.weights_after}, MACs {rep.macs_after}, acc masked {acc_masked:.4f}, "
                f"refit {acc0:.4f}, fine-tuned {acc1:.4f} (solve {solve_s:.1f} s)")
        if have_tp:
            for label, glob in (("tp-l1-global", True), ("tp-l1-per-layer", False)):
                model = _tp_prune(dense, example, target, glob)
                kept = sum(_prunable_weights(model).values())
                acc0 = evaluate_accuracy(model, test)
                hist = finetune(model, train, epochs, lr=0.01, seed=seed, desc=f"{label} s={sparsity}", progress=progress)
                acc1 = evaluate_accuracy(model, test)
                e2 = extract(model, example, sparsity=0.5)
                _, r2 = compact(model, NetworkSolution.full(e2.instance), e2)
                key = f"{label}@{sparsity}"
                models_for_latency[key] = model
                if sparsity == sparsities[0]:
                    base = _prunable_weights(dense)
                    allocation[label] = {n: _prunable_weights(model)[n] / base[n] for n in base}
                rows.append({"sparsity": sparsity, "method": label, "kept_weights": kept, "macs": r2.macs_after,
                             "acc_zero_shot": acc0, "acc_finetuned": acc1, "history": hist, "latency_key": key})
                log(f"{label} s={sparsity}: kept {kept}, acc {acc0:.4f} -> fine-tuned {acc1:.4f}")
        model = _magnitude(dense, target)
        acc0 = evaluate_accuracy(model, test)
        hist = finetune(model, train, epochs, lr=0.01, seed=seed, desc=f"magnitude s={sparsity}", progress=progress)
        acc1 = evaluate_accuracy(model, test)
        rows.append({"sparsity": sparsity, "method": "magnitude-unstructured",
                     "kept_weights": sum(_prunable_weights(model).values()), "macs": None,
                     "acc_zero_shot": acc0, "acc_finetuned": acc1, "history": hist,
                     "note": "accuracy only (sparse masks, no speedup)"})
        log(f"magnitude s={sparsity}: acc {acc0:.4f} -> fine-tuned {acc1:.4f}")
        if retention and sparsity == sparsities[0]:
            from rcprune.bench.retention_demo import retention_demo_rows

            rows += retention_demo_rows(dense, (train, test), sparsity, epochs, seed, progress=progress, log=log,
                                        time_limit=2.0 if quick else 20.0)
    ms = measure_latency(models_for_latency, bench_x, repeats=5 if quick else 20)
    breakdown = latency_breakdown(models_for_latency, bench_x, repeats=2 if quick else 10)
    for r in rows:
        key = "dense" if r["method"] == "dense" else r.get("latency_key")
        if key in ms:
            r["latency_ms"] = ms[key]
            r["speedup"] = ms["dense"] / ms[key]
            r["latency_split_ms"] = breakdown[key]
    result = {"config": {k: v for k, v in cfg.items() if k != "progress"} | {"finetune_epochs": epochs,
              "weighting": weighting, "refit_before_finetune": refit_before_finetune, "retention": retention,
              "sparsities": list(sparsities), "quick": quick, "torch_threads": torch.get_num_threads(),
              "latency": "CPU, batch 64, median of repeats, all models interleaved in this run"},
              "dense": dense_info | {"accuracy": dense_acc}, "rows": rows,
              "runtime_seconds": time.perf_counter() - t_start}
    atomic_write_bytes(out / "results.json", json.dumps(result, indent=1, default=float).encode())
    header = (f"# rcprune demo: ResNet-{cfg['depth']} (width {cfg['width']}) on digits {cfg['size']}x{cfg['size']}, "
              f"seed {seed}, {epochs} fine-tune epochs, runtime {result['runtime_seconds']:.0f} s")
    table = format_markdown(rows, header) + "\n" + format_breakdown(breakdown)
    atomic_write_bytes(out / "results.md", table.encode())
    result["plots"] = _plots(out, rows, allocation)
    log(table)
    return result
