"""Seeded network instances: hand-built small networks, random small networks, ResNet-shaped networks.

Hand-built networks exercise one coupling each (a chain of convs, a residual block with an identity or a
downsample shortcut, a conv -> flatten -> linear head). Random small networks (a few channels, blocks of 1
or 2 columns, random residual merges) are small enough for brute force. ResNet-18 / ResNet-50 shapes are
torchvision's (ImageNet stem, real channel counts, kernel sizes and residual groups, a 1000-way
classifier) with |Laplace| magnitudes at the Kaiming scale ``1 / sqrt(fan_in)`` and log-normal
per-channel spreads. Same arguments and seed: the same instance, always.

>>> net = resnet_network(18, seed=0, width=1 / 16, num_classes=10, sparsity=0.9)
>>> net.n_layers, len(net.groups)
(21, 14)
>>> net.layer("layer2.0.downsample").kernel, net.group("layer4.0.conv2:out").consumers
((1, 1), (('layer4.1.conv1', 0), ('fc', 0)))
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rcprune.network.builder import NetworkBuilder
from rcprune.network.model import NetworkInstance
from rcprune.validation import InvalidInstanceError, check_seed

__all__ = ["chain_network", "residual_network", "flatten_network_head", "random_network", "resnet_network",
           "NETWORK_CATALOGUE", "network_names", "get_network"]


def _scores(rng: np.random.Generator, m: int, n: int, kind: str, scale: float = 1.0) -> np.ndarray:
    if kind == "integers":
        return rng.integers(0, 10, size=(m, n)).astype(np.float64)
    if kind == "ones":
        return np.ones((m, n))
    if kind == "laplace":
        return np.abs(rng.laplace(scale=scale, size=(m, n)))
    raise InvalidInstanceError(f"unknown score kind {kind!r}; use 'laplace', 'integers' or 'ones'")


def chain_network(seed: int = 0, *, channels=(2, 3, 3, 2), kernel=(2, 1), scores: str = "integers",
                  protect_output: bool = True, **budget: Any) -> NetworkInstance:
    """A chain of convs ``x -> conv1 -> conv2 -> conv3`` (channels[0] inputs, channels[i] outputs).

    >>> chain_network(budget=20).layer_names
    ('conv1', 'conv2', 'conv3')
    """
    rng = np.random.default_rng(check_seed(seed))
    k = int(np.prod(kernel))
    b = NetworkBuilder("chain3")
    g = b.input("x", channels[0])
    for i, c in enumerate(channels[1:], start=1):
        g = b.layer(f"conv{i}", _scores(rng, c, channels[i - 1] * k, scores), g, kernel=kernel,
                    protected=protect_output and i == len(channels) - 1)
    return b.build(**budget)


def residual_network(seed: int = 0, *, downsample: bool = False, channels: int = 2, scores: str = "integers",
                     classes: int = 2, **budget: Any) -> NetworkInstance:
    """``x -> stem -> [conv_a -> conv_b] + shortcut -> fc``; the shortcut is the identity or, with
    ``downsample``, a 1x1 conv to twice the channels.

    >>> net = residual_network(budget=12)
    >>> net.group("stem:out").producers
    ('stem', 'conv_b')
    """
    rng = np.random.default_rng(check_seed(seed))
    c = channels
    out = 2 * c if downsample else c
    b = NetworkBuilder("residual-downsample" if downsample else "residual-identity")
    x = b.input("x", 1)
    h = b.layer("stem", _scores(rng, c, 1 * 2, scores), x, kernel=(2, 1))
    a = b.layer("conv_a", _scores(rng, out, c * 2, scores), h, kernel=(2, 1))
    y = b.layer("conv_b", _scores(rng, out, out * 2, scores), a, kernel=(2, 1))
    if downsample:
        s = b.layer("downsample", _scores(rng, out, c, scores), h, kernel=(1, 1))
        y = b.add(y, s)
    else:
        y = b.add(h, y)
    b.layer("fc", _scores(rng, classes, out, scores), y, protected=True)
    return b.build(**budget)


def flatten_network_head(seed: int = 0, *, channels: int = 3, spatial=(2, 2), classes: int = 2,
                         scores: str = "integers", **budget: Any) -> NetworkInstance:
    """``x -> conv -> flatten -> fc``: the fc's column ``c*H*W + h*W + w`` reads channel ``c``.

    >>> flatten_network_head(budget=30).layer("fc").block
    4
    """
    rng = np.random.default_rng(check_seed(seed))
    hw = int(np.prod(spatial))
    b = NetworkBuilder("conv-flatten-linear")
    x = b.input("x", 2)
    h = b.layer("conv", _scores(rng, channels, 2 * 1, scores), x, kernel=(1, 1))
    b.layer("fc", _scores(rng, classes, channels * hw, scores), h, spatial=spatial, protected=True)
    return b.build(**budget)


def random_network(seed: int = 0, *, n_layers: int = 3, max_channels: int = 3, max_block: int = 2,
                   residual: float = 0.4, protect: float = 0.5, scores: str = "integers",
                   density: float | None = None, weighting="none", min_density: float = 0.0) -> NetworkInstance:
    """A random small network: each layer reads one earlier group (or the input), residual adds merge
    equal-sized groups with probability ``residual``, the last layer is protected with probability
    ``protect``. The budget is ``density`` (drawn in [0.2, 0.8] if None) of all entries, raised to the
    protected minimum.

    >>> net = random_network(3)
    >>> net.n_layers
    3
    """
    rng = np.random.default_rng(check_seed(seed))
    b = NetworkBuilder(f"random-{seed}")
    roots = [b.input("x", int(rng.integers(1, max_channels + 1)))]
    for i in range(n_layers):
        src = roots[int(rng.integers(len(roots)))]
        c_out = int(rng.integers(1, max_channels + 1))
        k = int(rng.integers(1, max_block + 1))
        last = i == n_layers - 1
        g = b.layer(f"l{i}", _scores(rng, c_out, b._sizes[src] * k, scores), src, kernel=(k, 1),
                    protected=last and bool(rng.random() < protect))
        same = [h for h in roots if b._sizes[h] == c_out and h not in b._inputs]
        if same and rng.random() < residual:
            g = b.add(same[int(rng.integers(len(same)))], g)
        roots = list(dict.fromkeys(b._find(h) for h in roots + [g]))
    graph = b.graph()
    scores_ = {name: s for name, s, *_ in b._layers}
    total = sum(s.size for s in scores_.values())
    kw: dict[str, Any] = {"weighting": weighting, "min_density": min_density}
    probe = NetworkInstance(graph, scores_, budget=total, **kw)
    d = float(rng.uniform(0.2, 0.8)) if density is None else float(density)
    budget = max(int(d * total), int(probe.min_counts.sum()), 1)
    return NetworkInstance(graph, scores_, budget=budget, name=f"random-{seed}", **kw,
                           metadata={"source": "rcprune.network.generate", "generator": "random", "seed": seed})


# torchvision ResNet stage layouts: (blocks per stage, bottleneck?)
_RESNETS = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False), 50: ((3, 4, 6, 3), True),
            101: ((3, 4, 23, 3), True)}


def resnet_network(depth: int = 18, seed: int = 0, *, width: float = 1.0, num_classes: int = 1000,
                   channel_spread: float = 0.3, weighting="mean", min_density: float = 0.0,
                   budget: int | None = None, density: float | None = None, sparsity: float | None = 0.9,
                   name: str | None = None) -> NetworkInstance:
    """A ResNet-``depth``-shaped instance (torchvision layout: 7x7 stem, stages of basic or bottleneck
    blocks, 1x1 downsample shortcuts, average pool and a linear classifier with protected outputs).

    Scores are ``|Laplace|`` with scale ``1 / sqrt(fan_in)`` per layer, times log-normal factors
    (sigma ``channel_spread``) per output channel and per input channel. ``width`` scales every channel
    count (e.g. 1/16 for tests). The global budget defaults to 90% sparsity.
    """
    if depth not in _RESNETS:
        raise InvalidInstanceError(f"depth must be one of {sorted(_RESNETS)}, got {depth!r}")
    if not 0 < width <= 4:
        raise InvalidInstanceError(f"width must be in (0, 4], got {width!r}")
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    blocks, bottleneck = _RESNETS[depth]
    ch = lambda c: max(1, int(round(c * width)))  # noqa: E731
    b = NetworkBuilder(name or f"resnet{depth}")

    def conv(lname: str, src: str, c_in: int, c_out: int, kk: int, protected: bool = False) -> str:
        fan_in = c_in * kk * kk
        s = np.abs(rng.laplace(scale=1.0 / np.sqrt(fan_in), size=(c_out, c_in, kk * kk)))
        if channel_spread > 0:
            s *= rng.lognormal(0.0, channel_spread, size=(c_out, 1, 1))
            s *= rng.lognormal(0.0, channel_spread, size=(1, c_in, 1))
        return b.layer(lname, s.reshape(c_out, -1), src, kernel=(kk, kk), protected=protected)

    x = b.input("x", 3)
    g = conv("conv1", x, 3, ch(64), 7)
    c_in = ch(64)
    expansion = 4 if bottleneck else 1
    for stage, n_blocks in enumerate(blocks, start=1):
        planes = ch(64 * 2 ** (stage - 1))
        for blk in range(n_blocks):
            p = f"layer{stage}.{blk}"
            c_out = planes * expansion
            if bottleneck:
                h = conv(f"{p}.conv1", g, c_in, planes, 1)
                h = conv(f"{p}.conv2", h, planes, planes, 3)
                h = conv(f"{p}.conv3", h, planes, c_out, 1)
            else:
                h = conv(f"{p}.conv1", g, c_in, planes, 3)
                h = conv(f"{p}.conv2", h, planes, planes, 3)
            if blk == 0 and (stage > 1 or c_in != c_out):
                sc = conv(f"{p}.downsample", g, c_in, c_out, 1)
                g = b.add(h, sc)
            else:
                g = b.add(g, h)
            c_in = c_out
    fan_in = c_in
    s = np.abs(rng.laplace(scale=1.0 / np.sqrt(fan_in), size=(num_classes, c_in)))
    if channel_spread > 0:
        s *= rng.lognormal(0.0, channel_spread, size=(1, c_in))
    b.layer("fc", s, g, spatial=(1, 1), protected=True)
    meta = {"source": "rcprune.network.generate", "generator": "resnet", "depth": depth, "seed": seed,
            "width": width, "num_classes": num_classes, "channel_spread": channel_spread}
    return b.build(budget=budget, density=density, sparsity=sparsity if budget is None and density is None else None,
                   weighting=weighting, min_density=min_density, metadata=meta)


# name -> (generator, keyword arguments); all generated from their seed on demand (nothing stored).
NETWORK_CATALOGUE: dict[str, tuple[str, dict[str, Any]]] = {
    "chain3": ("chain", {"seed": 1, "budget": 20}),
    "residual-identity": ("residual", {"seed": 2, "budget": 12}),
    "residual-downsample": ("residual", {"seed": 3, "downsample": True, "budget": 40}),
    "conv-flatten-linear": ("flatten", {"seed": 4, "budget": 20}),
}
for _s in (50, 80, 90, 93):
    NETWORK_CATALOGUE[f"resnet18-s{_s}"] = ("resnet", {"depth": 18, "seed": 18, "sparsity": _s / 100})
    NETWORK_CATALOGUE[f"resnet50-s{_s}"] = ("resnet", {"depth": 50, "seed": 50, "sparsity": _s / 100})

_GENERATORS = {"chain": chain_network, "residual": residual_network, "flatten": flatten_network_head,
               "resnet": resnet_network, "random": random_network}


def network_names() -> list[str]:
    """Names of the library's network instances."""
    return list(NETWORK_CATALOGUE)


def get_network(name: str) -> NetworkInstance:
    """A library network instance by name, generated from its seed.

    >>> get_network("chain3").budget
    20
    """
    if not isinstance(name, str) or name not in NETWORK_CATALOGUE:
        raise InvalidInstanceError(f"unknown network instance {name!r}; available: {', '.join(NETWORK_CATALOGUE)}")
    family, kw = NETWORK_CATALOGUE[name]
    if family == "resnet":
        return resnet_network(**kw, name=name)
    return _GENERATORS[family](**kw).replace(name=name)
