"""Knowledge distillation from the dense model during fine-tuning (Hinton et al. 2015, "Distilling the
knowledge in a neural network"; used for pruned-model recovery, e.g. RAPID).

The loss is ``(1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``:
the ``T^2`` keeps the soft term's gradient scale independent of the temperature. The teacher runs in eval
mode under ``no_grad`` and is never changed.

>>> import torch
>>> loss = DistillationLoss(torch.nn.Linear(2, 3), temperature=2.0, alpha=0.0)
>>> x, y = torch.zeros(4, 2), torch.tensor([0, 1, 2, 0])
>>> round(float(loss(torch.zeros(4, 3), y, x)), 4)  # alpha 0: plain cross-entropy of uniform logits
1.0986
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rcprune.validation import InvalidInstanceError, check_fraction, check_real_option

__all__ = ["DistillationLoss"]


class DistillationLoss:
    """Cross-entropy blended with the temperature-softened KL divergence to a teacher's logits.

    Parameters
    ----------
    teacher : nn.Module
        The dense model (or any model with the same outputs); switched to eval mode, never trained.
    temperature : float
        T > 0; both logits are divided by it before the softmax.
    alpha : float
        Weight of the distillation term, in [0, 1] (0: plain cross-entropy).
    """

    def __init__(self, teacher: nn.Module, *, temperature: float = 4.0, alpha: float = 0.5):
        if not isinstance(teacher, nn.Module):
            raise InvalidInstanceError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
        self.teacher = teacher.eval()
        self.temperature = check_real_option(temperature, "temperature", 0.0, 1e6)
        self.alpha = check_fraction(alpha, "alpha", allow_zero=True, allow_one=True)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(logits, targets)
        if self.alpha == 0.0:
            return hard
        self.teacher.eval()
        with torch.no_grad():
            soft_targets = F.log_softmax(self.teacher(inputs) / self.temperature, dim=1)
        soft = F.kl_div(F.log_softmax(logits / self.temperature, dim=1), soft_targets, reduction="batchmean",
                        log_target=True)
        return (1.0 - self.alpha) * hard + self.alpha * self.temperature ** 2 * soft
