"""Distillation from the dense model during fine-tuning: the loss by its definition, the teacher untouched."""
import copy

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune import torch as rct  # noqa: E402
from rcprune.torch.distill import DistillationLoss  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402


def _kl(p_logits, q_logits, t):
    """KL(softmax(p / t) || softmax(q / t)) per sample, from the definition, averaged over the batch."""
    p = torch.softmax(p_logits / t, 1)
    return float((p * (torch.log(p) - torch.log(torch.softmax(q_logits / t, 1)))).sum(1).mean())


def test_loss_is_the_blend_of_cross_entropy_and_the_softened_kl():
    teacher, x, y = calibrated_resnet(batch=16, size=8)
    g = torch.Generator().manual_seed(1)
    student_logits = torch.randn(16, 4, generator=g)
    with torch.no_grad():
        t_logits = teacher(x)
    for temperature, alpha in ((1.0, 0.0), (4.0, 0.5), (2.0, 1.0), (8.0, 0.3)):
        got = float(DistillationLoss(teacher, temperature=temperature, alpha=alpha)(student_logits, y, x))
        ce = float(F.cross_entropy(student_logits, y))
        want = (1 - alpha) * ce + alpha * temperature ** 2 * _kl(t_logits, student_logits, temperature)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # a student equal to its teacher pays nothing for the soft term
    same = DistillationLoss(teacher, temperature=3.0, alpha=1.0)(t_logits, y, x)
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_finetune_with_a_teacher_trains_the_student_only():
    dense, x, y = calibrated_resnet(batch=32, size=8)
    student = copy.deepcopy(dense)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    loader = [(x[:16], y[:16]), (x[16:], y[16:])]
    hist = rct.finetune(student, loader, 2, teacher=dense, temperature=4.0, alpha=0.7, progress=False,
                        schedule=None, lr=0.05)
    after = dense.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # teacher untouched, BN stats included
    assert not dense.training
    assert any(not torch.equal(a, b) for a, b in zip(student.state_dict().values(), before.values()))
    # the first epoch's reported loss is the distillation loss: replay it on a copy trained the same way
    replay = copy.deepcopy(dense)
    opt = torch.optim.SGD(replay.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    loss = DistillationLoss(dense, temperature=4.0, alpha=0.7)
    torch.manual_seed(0)
    total = 0.0
    for xb, yb in loader:
        replay.train()
        opt.zero_grad()
        value = loss(replay(xb), yb, xb)
        value.backward()
        opt.step()
        total += float(value.detach()) * len(yb)
    assert hist[0]["loss"] == pytest.approx(total / 32, rel=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"teacher": "dense"}, "teacher must be"), ({"teacher": None, "temperature": 0.0}, None),
    ({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"), ({"alpha": 1.5}, "alpha"),
    ({"alpha": "0.5"}, "alpha"), ({"loss_fn": F.cross_entropy}, "not both"),
])
def test_bad_distillation_options(kwargs, match):
    dense, x, y = calibrated_resnet(batch=8, size=8)
    student = copy.deepcopy(dense)
    args = {"teacher": dense, **kwargs}
    if match is None:  # no teacher: temperature and alpha are not used
        rct.finetune(student, [(x, y)], 0, progress=False, **args)
        return
    with pytest.raises(InvalidInstanceError, match=match):
        rct.finetune(student, [(x, y)], 1, progress=False, **args)
