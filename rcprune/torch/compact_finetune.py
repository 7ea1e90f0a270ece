"""Fine-tuning the compacted model where it trains exactly the weights the masked model trains.

A masked fine-tune runs dense-sized layers under their masks; the compacted model holds only the kept
weights, so the same epochs cost a fraction of the time (the MNIST ResNet-20 in the group space, 15 epochs:
54-59 s instead of 186-202 s, docs/report-card.md section 20). The two are the same training, step by
step up to float rounding, when every weight of the compacted model is a kept weight of the masked one:
no layer in the ``conv-zeros`` form (a dense conv with zeros at the pruned positions of partially kept
channels) and no grouped conv padded with zero weights (:class:`rcprune.torch.compact_forms.GroupedConv`);
training would move those zeros, which the masks hold at zero. Whole-channel solutions (``granularity=
"group"`` or ``"channel"``) qualify; the column space qualifies where the forms chosen gather (``im2col``)
instead. The compacted model is trained with its BatchNorms as modules and folded afterwards
(:func:`fold_batchnorms`): ``compact`` folds them into the convs, which training would otherwise undo.
Dropout draws its masks over the smaller activations, so models with dropout see other (equally likely) masks.
"""
from __future__ import annotations

import numpy as np
import torch.fx as fx
import torch.nn as nn

from rcprune.torch.compact import CompactReport, compact
from rcprune.torch.compact_forms import GroupedConv, RCConv2d, batchnorm_folded

__all__ = ["compacted_for_training", "trains_only_kept_weights", "fold_batchnorms", "needs_masked_model",
           "MASKED_ONLY_OPTIONS"]

# finetune options that work on the masked model's own structure (its extraction, its masks, its
# parameters' names in a checkpoint): with any of them the masked model is fine-tuned
MASKED_ONLY_OPTIONS = ("regenerate", "sparse_training", "extraction", "checkpoint", "resume", "distributed")


def needs_masked_model(finetune_options) -> bool:
    """Whether :func:`rcprune.torch.finetune` with these options must train the masked model: one of
    :data:`MASKED_ONLY_OPTIONS` set, or a ``torch.distributed`` run (data-parallel training of the
    compacted model is not tested)."""
    from rcprune.torch.distributed import is_distributed

    if any(finetune_options.get(k) for k in MASKED_ONLY_OPTIONS):
        return True
    return finetune_options.get("distributed") is None and is_distributed()

_FOLDABLE = (RCConv2d, GroupedConv, nn.Conv2d)   # after a linear, compact keeps the BatchNorm too


def compacted_for_training(model: nn.Module, solution, extraction, **compact_options):
    """``compact(model, solution, extraction, fold_batchnorm=False, **compact_options)`` and its report where
    that model trains only kept weights (:func:`trains_only_kept_weights`), else None: the model to
    fine-tune in place of the masked ``model``; :func:`fold_batchnorms` after training."""
    small, report = compact(model, solution, extraction, fold_batchnorm=False, **compact_options)
    return (small, report) if trains_only_kept_weights(small, report) else None


def trains_only_kept_weights(model: nn.Module, report: CompactReport) -> bool:
    """Whether every weight of the compacted ``model`` is a kept weight (no ``conv-zeros`` layer in
    ``report``, no padded grouped conv), so that fine-tuning it trains what the masked model trains."""
    if any(layer["mode"] == "conv-zeros" for layer in report.layers):
        return False
    return not any(isinstance(m, GroupedConv) and m.out_index is not None for m in model.modules())


def fold_batchnorms(model: fx.GraphModule) -> fx.GraphModule:
    """``model`` (in place) with each eval-mode BatchNorm that alone reads a compacted conv's output
    folded into the conv's weight and bias (``w * scale``, ``(b - mean) * scale + beta``), as
    :func:`rcprune.torch.compact` folds them; the others (after a linear, an add, a concatenation, a padded
    grouped conv, or in training mode) stay. Returns ``model``."""
    modules = dict(model.named_modules())
    for node in list(model.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.training or bn.running_var is None:
            continue
        src = node.args[0]
        layer = modules.get(src.target) if isinstance(src, fx.Node) and src.op == "call_module" else None
        if not isinstance(layer, _FOLDABLE) or len(src.users) != 1 or layer.weight.shape[0] != bn.num_features \
                or (isinstance(layer, GroupedConv) and layer.out_index is not None):
            continue
        bias = None if layer.bias is None else layer.bias.detach()
        w, b = batchnorm_folded(bn, np.arange(bn.num_features), layer.weight.detach(), bias)
        layer.weight, layer.bias = nn.Parameter(w), nn.Parameter(b)
        node.replace_all_uses_with(src)
        model.graph.erase_node(node)
        model.delete_submodule(node.target)
    model.graph.lint()
    model.recompile()
    return model
