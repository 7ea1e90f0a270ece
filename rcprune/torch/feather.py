"""Feather sparse training (Glentis Georgoulakis, Retsinas and Maragos, BMVC 2023, "Feather: an elegant
solution to effective DNN sparsification"): the mask is learned while the network trains.

Every prunable layer's forward uses ``sign(w) * max(|w|^p - tau^p, 0)^(1/p)`` of its dense weights ``w``
(p = 3: between hard thresholding, p -> inf, and soft thresholding, p = 1); the backward is the
straight-through estimator, ``dL/dw = dL/dw_sparse`` on the kept weights and ``theta * dL/dw_sparse`` on
the pruned ones (``|w| <= tau``), so pruned weights keep learning and can come back. The dense weights
are the trained parameters. One global threshold ``tau`` (the target-sparsity quantile of ``|w|`` over
all prunable layers) is chosen before every step, for a target raised on the cubic schedule of Zhu and
Gupta (2017): ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3`` between ``t_0`` and ``t_1``
(by default from the first step to half of training, as in the authors' code). For the last steps
(``freeze``) the mask is frozen: the layers become ordinary masked layers (:mod:`rcprune.torch.rcmask`),
their kept weights set to the operator's output so the network computes the same function, and
training goes on with the mask fixed. A model trained to the end carries that mask like any pruned model
(:func:`rcprune.torch.restore` gives back the weights it had before training, :func:`rcprune.torch.bake`
makes the mask permanent).

Defaults follow the authors' code (github.com/athglentis/feather, ``sparse_utils.py``): ``theta`` is
0.5 for a final sparsity above 0.95 and 1 (the plain straight-through estimator) otherwise; the ramp
starts at sparsity 0 on the first step and ends at half of the steps. Not taken from it: their final
model hard-thresholds the dense weights (kept weights unshrunk), here the kept weights are the
operator's output (what the network was trained with) and the mask is frozen for the last ``freeze``
share of the steps (0.1 by default; their code re-chooses ``tau`` until the end); their gradient-norm
clipping and the weight-decay exemption of BatchNorm and bias parameters are left to the optimizer
(``finetune(optimizer=...)``).

Two extensions (:class:`FeatherConfig`): ``structure="rc"``, the row-and-column mask re-chosen by a
network solver on the dense weights every few steps under the RC budget of the scheduled target and
trained through the same straight-through estimator (:mod:`rcprune.torch.feather_rc`); and
``allocation="learned"``, per-layer thresholds ``c * b_l`` from a Laplace or Gaussian model of each
layer's weights whose scale ``b_l`` is trained by gradient, ``c`` set for the global target.

>>> import torch
>>> w = torch.tensor([-2.0, -0.5, 0.5, 1.0, 2.0])
>>> [round(v, 4) for v in feather_threshold(w, 1.0).tolist()]
[-1.9129, 0.0, 0.0, 0.0, 1.9129]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from rcprune.torch.batches import check_loader, labelled_batch
from rcprune.torch.masking import is_masked
from rcprune.torch.rcmask import register
from rcprune.validation import InvalidInstanceError, check_fraction, check_int_option, check_real_option

STRUCTURES = ("unstructured", "rc")
ALLOCATIONS = ("global", "learned")
DISTRIBUTIONS = ("laplace", "gaussian")

__all__ = ["FeatherConfig", "feather_threshold", "FeatherSTE", "cubic_sparsity", "global_threshold",
           "global_magnitude_prune", "paper_grad_scale", "prunable_layers", "STRUCTURES",
           "ALLOCATIONS", "DISTRIBUTIONS", "fitted_scale"]


def feather_threshold(w: torch.Tensor, tau, p: float = 3.0) -> torch.Tensor:
    """The Feather thresholding operator ``sign(w) * max(|w|^p - tau^p, 0)^(1/p)``, differentiable (its
    true gradient ``|w|^(p-1) (|w|^p - tau^p)^(1/p - 1)`` where ``|w| > tau``, 0 elsewhere); ``tau = 0``
    is the identity. Training uses :class:`FeatherSTE`, which has this forward and a straight-through
    backward."""
    a = w.abs()
    diff = a.pow(p) - torch.as_tensor(tau, dtype=w.dtype, device=w.device).pow(p)
    kept = diff > 0
    safe = torch.where(kept, diff, torch.ones_like(diff))   # no inf gradient from x^(1/p) at 0
    return torch.where(kept, torch.sign(w) * safe.pow(1.0 / p), torch.zeros_like(w))


TAU_GRADIENT_FLOOR = 0.25   # |output| floored at this share of tau in the tau gradient (bounds it by 16)


class FeatherSTE(torch.autograd.Function):
    """``FeatherSTE.apply(w, tau, theta, p)``: :func:`feather_threshold` forward; backward the incoming
    gradient on the kept weights (``|w| > tau``) and ``theta`` times it on the pruned ones.

    A ``tau`` that requires grad (the learned allocation) gets the chain rule through the operator's true
    derivative, ``d out / d tau = -sign(w) (tau / |out|)^(p-1)`` on the kept weights, with ``|out|`` floored
    at ``TAU_GRADIENT_FLOOR * tau`` (the exact derivative is infinite at the threshold), divided by the
    number of entries of ``w`` (a mean, so a layer's scale does not move faster for being larger; summed,
    the learned scales ran away and emptied whole layers on a digits ResNet-8)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, tau: torch.Tensor, theta: float, p: float) -> torch.Tensor:
        out = feather_threshold(w, tau, p)
        ctx.save_for_backward(w, tau, out)
        ctx.theta, ctx.p = theta, p
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        w, tau, out = ctx.saved_tensors
        kept = w.abs() > tau
        g_tau = None
        if ctx.needs_input_grad[1]:
            mag = out.abs().clamp_min(TAU_GRADIENT_FLOOR * tau.detach().clamp_min(1e-30))
            d = torch.where(kept, -torch.sign(w) * (tau / mag).pow(ctx.p - 1), torch.zeros_like(w))
            g_tau = (grad * d).sum().reshape(tau.shape) / w.numel()
        if ctx.theta == 1.0:
            return grad, g_tau, None, None
        scale = torch.where(kept, torch.ones_like(grad), torch.full_like(grad, ctx.theta))
        return grad * scale, g_tau, None, None


def paper_grad_scale(sparsity: float) -> float:
    """The authors' gradient scale of the pruned weights: 0.5 for a final sparsity above 0.95, else 1."""
    return 0.5 if sparsity > 0.95 else 1.0


def cubic_sparsity(step: int, total: int, final: float, *, initial: float = 0.0, ramp_start: float = 0.0,
                   ramp_end: float = 0.5) -> float:
    """The target sparsity before step ``step`` of ``total`` (Zhu and Gupta's cubic schedule): ``initial``
    until ``ramp_start * total``, ``final + (initial - final) (1 - r)^3`` with ``r`` the share of the ramp
    done, then ``final`` from ``ramp_end * total`` on.

    >>> [round(cubic_sparsity(t, 10, 0.9), 4) for t in (0, 1, 2, 5, 9)]
    [0.0, 0.4392, 0.7056, 0.9, 0.9]
    """
    t0, t1 = ramp_start * total, ramp_end * total
    if step <= t0:
        return float(initial)
    if step >= t1:
        return float(final)
    r = (step - t0) / (t1 - t0)
    return float(final + (initial - final) * (1.0 - r) ** 3)


def _pruned_count(total: int, sparsity: float) -> int:
    return min(total, max(0, round(sparsity * total)))


def global_threshold(weights, sparsity: float) -> torch.Tensor:
    """The global ``tau``: the ``round(sparsity * N)``-th smallest ``|w|`` over the tensors ``weights`` (N
    entries in all), so the operator zeroes that many (ties aside); 0 when none is to be pruned."""
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights])
    k = _pruned_count(flat.numel(), sparsity)
    if k == 0:
        return torch.zeros((), dtype=flat.dtype, device=flat.device)
    return flat.kthvalue(k).values


def prunable_layers(model: nn.Module, layers=None) -> list[str]:
    """The module names Feather prunes: by default every Conv2d with ``groups == 1`` and every Linear, the
    stem and the classifier included (rcprune's unstructured convention,
    :func:`rcprune.torch.retention.retention_layers`); named layers must be such modules."""
    from rcprune.torch.retention import retention_layers

    return retention_layers(model, layers)[0]


def _global_keep(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Keep-masks of the ``N - round(sparsity N)`` largest ``|w|`` over all tensors (exact count; ties by index)."""
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    kept = flat.numel() - _pruned_count(flat.numel(), sparsity)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if kept > 0:
        keep[flat.topk(kept, sorted=False).indices] = True
    out, start = {}, 0
    for name, w in weights.items():
        out[name] = keep[start:start + w.numel()].reshape(w.shape)
        start += w.numel()
    return out


def global_magnitude_prune(model: nn.Module, sparsity: float, *, layers=None) -> dict[str, float]:
    """Unstructured global magnitude pruning: mask (:func:`rcprune.torch.rcmask.register`) all but the
    largest ``|w|`` over the prunable layers (:func:`prunable_layers`) so that ``round(sparsity * N)`` of
    their N weights are pruned; in place. Returns each layer's sparsity. The baseline Feather is compared
    with (then :func:`rcprune.torch.finetune` with the mask fixed).

    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> sum(global_magnitude_prune(net, 0.5).values()) > 0
    True
    """
    sparsity = check_fraction(sparsity, "sparsity", allow_zero=True, allow_one=False)
    names = prunable_layers(model, layers)
    modules = dict(model.named_modules())
    masked = [n for n in names if is_masked(modules[n]) or parametrize.is_parametrized(modules[n])]
    if masked:
        raise InvalidInstanceError(f"layer(s) {masked} already carry a mask or parametrization: "
                                   "rcprune.torch.restore(model) or bake(model) first")
    keeps = _global_keep({n: modules[n].weight for n in names}, sparsity)
    for n in names:
        register(modules[n], "weight", keeps[n])
    return {n: 1.0 - float(k.float().mean()) for n, k in keeps.items()}


def fitted_scale(w: torch.Tensor, distribution: str = "laplace") -> torch.Tensor:
    """The maximum-likelihood scale of a zero-mean model of ``w``: Laplace ``b = mean |w|``, Gaussian
    ``sigma = sqrt(mean w^2)`` (floored at 1e-12)."""
    w = w.detach()
    s = w.abs().mean() if distribution == "laplace" else w.pow(2).mean().sqrt()
    return s.clamp_min(1e-12)


@dataclass(frozen=True)
class FeatherConfig:
    """The settings of Feather sparse training (``finetune(sparse_training=FeatherConfig(...))``).

    Parameters
    ----------
    sparsity : float
        Final share of the prunable weights pruned, in [0, 1).
    initial_sparsity : float
        The schedule's start (at most ``sparsity``).
    ramp_start, ramp_end : float
        Shares of the training steps where the cubic ramp starts and reaches ``sparsity``
        (``0 <= ramp_start < ramp_end <= 1``).
    freeze : float, optional
        Share of the steps, at the end, trained with the mask frozen (``ramp_end <= 1 - freeze``). Default
        0.1, and for ``structure="rc"`` ``1 - ramp_end`` (the RC mask is fixed once the ramp ends: on a
        digits ResNet-8 at 70% in 3 epochs that reached 94.4% where 0.1 reached 82.7%, magnitude RC plus
        the masked fine-tune 96.0%); 0 freezes
        it only after the last step.
    grad_scale : float, optional
        ``theta``, the gradient scale of the pruned weights in (0, 1]; default :func:`paper_grad_scale`.
    p : float
        The operator's exponent (> 0; 3 is Feather's, 1 soft thresholding).
    layers : list of str, optional
        Module names (:func:`prunable_layers`); default every Conv2d (groups 1) and Linear.
    structure : {"unstructured", "rc"}
        ``"rc"``: the structured variant. The mask is a row-and-column mask (kept output channels x kept
        input columns per layer, BatchNorms masked with their channels, :func:`rcprune.torch.apply`'s
        masks) that a network solver (``method``) chooses on the dense weights' |w| under the RC budget
        of the current target sparsity, every ``solve_every`` steps; the forward is the dense weights
        under that mask, the backward the same straight-through estimator (pruned entries' gradients
        scaled by ``theta``), so the RC mask is learned during training and frozen at the end like the
        unstructured one. (The cube-root shrink is not applied here: the solver's choice is not a
        threshold on one score.) ``sparsity`` then counts the kept weights as the RC budget does.
        On the MNIST ResNet-20 at 90% in 5 epochs (seed 0): 95.9%, magnitude RC plus the masked fine-tune
        95.3% (before ``min_density`` it ended near chance, its masks having emptied whole layers).
    solve_every, method :
        How often (in steps) and with which network method of :func:`rcprune.solve` the RC mask is
        re-chosen (``structure="rc"``).
    min_density : float
        ``structure="rc"``: every layer keeps at least this share of its entries (the instance's
        ``min_density``, capped at half the kept share ``(1 - sparsity) / 2``). Without it the solver gave
        the whole budget to the layer whose dense weights grew most and disconnected the network (a digits
        ResNet-8 at 90% fell to chance; with 0.05 it reached 77%).
    allocation : {"global", "learned"}
        How the unstructured target is shared among layers. ``"global"``: one tau over all weights (the
        paper's). ``"learned"``: each layer ``l`` models its weights by a zero-mean ``distribution`` of scale
        ``b_l`` (initialized to its maximum-likelihood fit, :func:`fitted_scale`) and thresholds at
        ``tau_l = c * b_l``, the same quantile ``c`` of every layer's model (a layer whose weights fit the
        model exactly would get the sparsity ``1 - exp(-c)``, Laplace, or ``erf(c / sqrt 2)``, Gaussian);
        ``c`` is chosen each step so that the global sparsity is the target, and ``log b_l`` is trained by
        gradient through the operator's derivative in tau (:class:`FeatherSTE`), so a layer whose pruning
        costs loss lowers its threshold and the others make up the budget.
    distribution : {"laplace", "gaussian"}
    scale_lr : float
        Learning rate of the ``log b_l``, constant (a parameter group of their own, added to the optimizer,
        no weight decay, not scheduled). Their gradient is a per-weight mean (:class:`FeatherSTE`), hence the
        large default: of 0.1, 1 and 10 on a digits ResNet-8 at 90% (3 epochs), 10 learned the allocation
        closest to the global one (stem, shortcuts and classifier pruned least); not tuned beyond that.
    """

    sparsity: float
    initial_sparsity: float = 0.0
    ramp_start: float = 0.0
    ramp_end: float = 0.5
    freeze: float | None = None
    grad_scale: float | None = None
    p: float = 3.0
    layers: tuple | list | str | None = None
    structure: str = "unstructured"
    solve_every: int = 10
    method: str = "network-greedy"
    min_density: float = 0.05
    allocation: str = "global"
    distribution: str = "laplace"
    scale_lr: float = 10.0

    def __post_init__(self):
        s = check_fraction(self.sparsity, "sparsity", allow_zero=True, allow_one=False)
        s0 = check_fraction(self.initial_sparsity, "initial_sparsity", allow_zero=True, allow_one=False)
        if s0 > s:
            raise InvalidInstanceError(f"the sparsity schedule must not end below its start: initial_sparsity "
                                       f"{s0} > sparsity {s}")
        a = check_fraction(self.ramp_start, "ramp_start", allow_zero=True, allow_one=False)
        b = check_fraction(self.ramp_end, "ramp_end", allow_zero=False, allow_one=True)
        if not a < b:
            raise InvalidInstanceError(f"ramp_end must come after ramp_start, got ramp_start={a}, ramp_end={b}")
        if self.freeze is not None:
            check_fraction(self.freeze, "freeze", allow_zero=True, allow_one=False)
        if self.structure not in STRUCTURES:
            raise InvalidInstanceError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        f = self.freeze_share
        if b > 1.0 - f + 1e-12:
            raise InvalidInstanceError(f"the mask would freeze before the ramp ends: ramp_end={b} > 1 - freeze={1 - f}")
        if self.grad_scale is not None:
            check_real_option(self.grad_scale, "grad_scale", 0.0, 1.0)
        check_real_option(self.p, "p", 0.0, 1e6)
        check_int_option(self.solve_every, "solve_every", minimum=1)
        check_fraction(self.min_density, "min_density", allow_zero=True, allow_one=False)
        if self.allocation not in ALLOCATIONS:
            raise InvalidInstanceError(f"allocation must be one of {ALLOCATIONS}, got {self.allocation!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise InvalidInstanceError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        check_real_option(self.scale_lr, "scale_lr", 0.0, 1e6)
        if self.allocation == "learned" and self.structure != "unstructured":
            raise InvalidInstanceError("allocation='learned' is for the unstructured operator (structure='rc' "
                                       "allocates by its solver)")
        if self.structure == "rc":
            from rcprune.solve import METHODS

            if self.layers is not None:
                raise InvalidInstanceError("structure='rc' prunes the layers the extraction finds: not with layers=")
            if not isinstance(self.method, str) or self.method not in METHODS["network"]:
                raise InvalidInstanceError(f"method must be a network method of rcprune.solve "
                                           f"({sorted(METHODS['network'])}), got {self.method!r}")

    @property
    def freeze_share(self) -> float:
        """``freeze`` with its default resolved."""
        if self.freeze is not None:
            return float(self.freeze)
        return 1.0 - float(self.ramp_end) if self.structure == "rc" else 0.1

    @property
    def theta(self) -> float:
        return float(self.grad_scale) if self.grad_scale is not None else paper_grad_scale(self.sparsity)


class _Threshold(nn.Module):
    """The parametrization of one layer's weight during the ramp: :class:`FeatherSTE` with the shared tau,
    or (learned allocation) with ``tau = c * exp(log_scale)``, ``log_scale`` a parameter of its own."""

    def __init__(self, state: "FeatherTraining", log_scale: torch.Tensor | None = None):
        super().__init__()
        self._state = [state]   # a list: not a submodule, not in the state_dict
        self.log_scale = None if log_scale is None else nn.Parameter(log_scale.detach().clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        st = self._state[0]
        if self.log_scale is None:
            tau = st.tau.to(w.dtype)
        else:
            tau = st.tau.to(w.dtype) * self.log_scale.exp().to(w.dtype)
        return FeatherSTE.apply(w, tau, st.config.theta, st.config.p)


class FeatherTraining:
    """The Feather side of one :func:`rcprune.torch.finetune` run (built and driven by it): checks, installs
    the operator on the prunable layers, sets ``tau`` before every step, freezes the mask and ends with
    :class:`rcprune.torch.rcmask.RCMask` masks."""

    def __init__(self, config: FeatherConfig, model: nn.Module, train_loader, epochs: int):
        self.config = config
        self.names = prunable_layers(model, config.layers)
        modules = dict(model.named_modules())
        self.modules = {n: modules[n] for n in self.names}
        busy = [n for n, m in self.modules.items() if is_masked(m) or parametrize.is_parametrized(m)]
        if busy:
            raise InvalidInstanceError(f"sparse_training='feather' learns the mask of an unmasked model, but layer(s) "
                                       f"{busy} already carry a mask or parametrization: rcprune.torch.restore(model) "
                                       "or bake(model) first")
        if epochs < 1:
            raise InvalidInstanceError("sparse_training='feather' needs epochs >= 1")
        if iter(train_loader) is train_loader or not hasattr(train_loader, "__len__"):
            raise InvalidInstanceError("sparse_training='feather' schedules the sparsity over the steps, so train_loader "
                                       "must have a length and be re-iterable (a DataLoader or a list of batches)")
        self.steps_per_epoch = len(train_loader)
        if self.steps_per_epoch < 1:
            raise InvalidInstanceError("train_loader is empty")
        self.total = epochs * self.steps_per_epoch
        self.freeze_step = self.total - round(config.freeze_share * self.total)
        self.step = 0
        self.frozen = False
        self.tau = torch.zeros(())
        self.target = config.initial_sparsity
        self.allocation: dict[str, float] = {}
        self.before: dict[str, torch.Tensor] = {}

    def probe(self, model: nn.Module, train_loader, device: str, check_labels: bool) -> None:
        """One forward pass of the first batch (eval mode, no gradient, the model unchanged): a loader whose
        batches the model cannot take, or whose targets do not fit its outputs, fails here, before training."""
        batch = next(iter(check_loader(train_loader, "train_loader")), None)
        if batch is None:
            raise InvalidInstanceError("train_loader is empty")
        x, y = labelled_batch(batch, "train_loader")
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.to(device)(x.to(device))
        except RuntimeError as exc:
            raise InvalidInstanceError(f"train_loader yields inputs of shape {tuple(x.shape)} that the model cannot "
                                       f"take: {str(exc).splitlines()[0]}") from None
        finally:
            model.train(was)
        if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != x.shape[0]:
            raise InvalidInstanceError(f"the model's output for a batch of {x.shape[0]} is not a batch of outputs")
        if y.shape[0] != x.shape[0]:
            raise InvalidInstanceError(f"train_loader yields {x.shape[0]} inputs with {y.shape[0]} targets")
        if check_labels:   # cross-entropy: class indices or per-class targets
            if y.ndim == 1 and not y.is_floating_point():
                if out.ndim != 2 or (y.numel() and (int(y.min()) < 0 or int(y.max()) >= out.shape[1])):
                    raise InvalidInstanceError(f"train_loader's targets must be class indices in [0, {out.shape[-1]}) "
                                               f"for outputs of shape {tuple(out.shape)}")
            elif tuple(y.shape) != tuple(out.shape):
                raise InvalidInstanceError(f"train_loader yields targets of shape {tuple(y.shape)} for outputs of shape "
                                           f"{tuple(out.shape)}")

    def install(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Put the operator on every prunable weight (the parameter objects stay the trained ones); with the
        learned allocation, add the layers' log-scales to ``optimizer`` (a group of their own)."""
        first = next(iter(self.modules.values())).weight
        self.tau = torch.zeros((), dtype=first.dtype, device=first.device)
        learned = self.config.allocation == "learned"
        for n, m in self.modules.items():
            self.before[n] = m.weight.detach().clone()
            log_scale = fitted_scale(m.weight, self.config.distribution).log() if learned else None
            parametrize.register_parametrization(m, "weight", _Threshold(self, log_scale))
        if learned and optimizer is not None:
            optimizer.add_param_group({"params": list(self._log_scales().values()), "lr": self.config.scale_lr,
                                       "weight_decay": 0.0})

    def _dense(self) -> dict[str, torch.Tensor]:
        return {n: m.parametrizations.weight.original for n, m in self.modules.items()}

    def _log_scales(self) -> dict[str, torch.Tensor]:
        return {n: m.parametrizations.weight[0].log_scale for n, m in self.modules.items()}

    def _ratios(self) -> dict[str, torch.Tensor]:
        """What is thresholded: ``|w|`` (global) or ``|w| / b_l`` (learned), detached."""
        dense = {n: w.detach().abs() for n, w in self._dense().items()}
        if self.config.allocation != "learned":
            return dense
        return {n: dense[n] / ls.detach().exp() for n, ls in self._log_scales().items()}

    def before_step(self) -> None:
        """Choose tau for this step's target (or freeze the mask when the frozen phase begins)."""
        if not self.frozen and self.step >= self.freeze_step:
            self.freeze()
        if not self.frozen:
            c = self.config
            self.target = cubic_sparsity(self.step, self.total, c.sparsity, initial=c.initial_sparsity,
                                         ramp_start=c.ramp_start, ramp_end=c.ramp_end)
            self.tau = global_threshold(self._ratios().values(), self.target).to(self.tau.device)
        self.step += 1

    @torch.no_grad()
    def freeze(self) -> None:
        """Final tau and mask at the final sparsity from the current dense weights; each layer becomes an
        RCMask-masked layer whose kept weights are the operator's output and whose stored original is the
        weight the model had before training."""
        if self.frozen:
            return
        c = self.config
        dense = {n: w.detach() for n, w in self._dense().items()}
        ratios = self._ratios()
        scales = {n: ls.detach().exp() for n, ls in self._log_scales().items()} if c.allocation == "learned" else {}
        self.target = c.sparsity
        self.tau = global_threshold(ratios.values(), c.sparsity).to(self.tau.device)
        keeps = _global_keep(ratios, c.sparsity)
        self.allocation = {n: 1.0 - float(k.float().mean()) for n, k in keeps.items()}
        for n, m in self.modules.items():
            values = feather_threshold(dense[n], self.tau * scales[n] if scales else self.tau, c.p)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            rc = register(m, "weight", keeps[n])
            m.parametrizations.weight.original.copy_(self.before[n])
            rc.value[keeps[n]] = values[keeps[n]]
        self.before = {}
        self.frozen = True

    def record(self) -> dict:
        """What an epoch's history record gets: the target sparsity and tau of the last step (with the
        learned allocation the common quantile c), whether the mask is frozen, and each layer's sparsity
        (``layer_sparsity``: the mask's once frozen, else the operator's of the last step)."""
        if self.frozen:
            layers = dict(self.allocation)
        else:
            layers = {n: float((r <= self.tau).float().mean()) if float(self.tau) > 0 else 0.0
                      for n, r in self._ratios().items()}
        return {"sparsity": float(self.target), "threshold": float(self.tau), "mask_frozen": self.frozen,
                "layer_sparsity": layers}

    def abort(self) -> None:
        """After a failed step: take the operator off (the dense weights stay as trained)."""
        if not self.frozen:
            for m in self.modules.values():
                if parametrize.is_parametrized(m, "weight"):
                    parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)


def sparse_training_of(sparse_training, sparsity) -> FeatherConfig | None:
    """``finetune``'s ``sparse_training`` and ``sparsity`` arguments as a :class:`FeatherConfig` (or None)."""
    if sparse_training is None:
        if sparsity is not None:
            raise InvalidInstanceError("sparsity= is for sparse training: give sparse_training='feather' with it")
        return None
    if isinstance(sparse_training, FeatherConfig):
        if sparsity is not None and float(sparsity) != sparse_training.sparsity:
            raise InvalidInstanceError("give the sparsity in the FeatherConfig or as sparsity=, not both")
        return sparse_training
    if sparse_training != "feather":
        raise InvalidInstanceError(f"sparse_training must be 'feather', a FeatherConfig or None, got {sparse_training!r}")
    if sparsity is None:
        raise InvalidInstanceError("sparse_training='feather' needs sparsity= (the final share of weights pruned)")
    return FeatherConfig(sparsity=sparsity)
