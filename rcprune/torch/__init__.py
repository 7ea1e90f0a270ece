"""The PyTorch adapter: a model in, a row-and-column pruned model out, one small function per step.

``extract`` traces the model (torch.fx) into a :class:`rcprune.NetworkInstance` and keeps the mapping back
to modules; a network solver (``rcprune.solve(instance, method=...)``) picks kept rows and columns;
``apply`` masks the model (parametrizations: reversible, bit for bit, until ``bake``); ``compact``
returns a new, physically smaller model; ``latency_table`` measures each layer's compact forms (a
latency budget for the solvers); ``finetune`` trains with the masks fixed (optionally distilling from the dense model, ``teacher=``, and
regenerating collapsed channels, ``regenerate=True``); ``feather`` (or ``finetune(sparse_training="feather")``)
learns an unstructured mask during training instead, ``global_magnitude_prune`` is its magnitude baseline; ``ls_refit`` refits the
kept weights by least squares on calibration data; ``compensate`` re-chooses each layer's columns on the
compensated objective and refits them layer by layer against the dense model (data-aware pruning without
training), ``error_curves`` measures each layer's error after the refit against its kept count (what a
data-aware budget is split by), ``reestimate_batchnorm`` renews BatchNorm statistics; ``prune`` chains them all in one call on a copy of
the model; ``retention_prune`` prunes unstructured, layer by layer,
keeping the weights whose removal changes each layer's output least (small-weight retention); ``export``
writes a compacted model as ONNX or as a pickle-free PyTorch file that ``load_compacted`` rebuilds
(``save_compacted`` writes that file alone); ``init_distributed`` starts the process group under ``torchrun``,
in which ``finetune`` trains data-parallel (DistributedDataParallel). Needs the ``torch`` extra.
"""
from rcprune.torch.extract import Extraction, LayerMap, extract
from rcprune.torch.masking import apply, bake, is_masked, restore
from rcprune.torch.compact import CompactReport, compact
from rcprune.torch.distill import DistillationLoss
from rcprune.torch.feather import FeatherConfig, global_magnitude_prune
from rcprune.torch.finetune import evaluate_accuracy, feather, finetune
from rcprune.torch.refit import RefitReport, ls_refit
from rcprune.torch.batchnorm import reestimate_batchnorm
from rcprune.torch.compensate import CompensationReport, compensate
from rcprune.torch.error_curves import error_curves
from rcprune.torch.retention import RetentionReport, restore_original, retention_prune  # noqa: F401
from rcprune.torch.latency_table import LatencyTable, latency_table
from rcprune.torch.pipeline import PruneReport, prune
from rcprune.torch.saved_model import load_compacted, save_compacted
from rcprune.torch.export import ExportReport, export
from rcprune.torch.distributed import init_distributed

__all__ = ["extract", "Extraction", "LayerMap", "apply", "bake", "restore", "is_masked", "compact",
           "CompactReport", "finetune", "evaluate_accuracy", "DistillationLoss", "ls_refit", "RefitReport",
           "retention_prune", "RetentionReport", "prune", "PruneReport", "latency_table", "LatencyTable",
           "compensate", "CompensationReport", "reestimate_batchnorm", "export", "ExportReport", "save_compacted",
           "load_compacted", "feather", "FeatherConfig", "global_magnitude_prune", "init_distributed", "error_curves"]
