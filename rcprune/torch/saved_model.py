"""A compacted model as a file without pickle: its tensors plus a JSON description of its modules and graph.

:func:`rcprune.torch.compact` returns a ``torch.fx.GraphModule`` of standard ``torch.nn`` modules and the
compacted forms of :mod:`rcprune.torch.compact_forms`, whose structure (kept indices, geometry, modes)
is in their attributes and buffers. ``torch.save(model)`` would pickle the classes; ``state_dict`` alone
needs the structure rebuilt first. Here the file holds both, readable by ``torch.load(weights_only=True)``:

- ``tensors``: every parameter and buffer, keyed like ``state_dict`` (non-persistent buffers included);
- ``meta``: a JSON string: per module its class (``torch.nn`` or rcprune's compacted forms only), its
  plain attributes (numbers, strings, tuples, dtypes, ...), the names of its parameters and buffers; and
  the graph, node by node (op, target, arguments).

:func:`load_compacted` rebuilds each module from its class without running its ``__init__`` (attributes
set, tensors registered), rebuilds the graph and wraps both in a ``GraphModule``: the same modules,
tensors and code as the saved model, so it computes the same outputs, bit for bit. No pickle, and no
code of the file's own: modules are only of the allowed classes; the graph calls only allowlisted
functions (``torch``'s builtin ops, ``torch.nn.functional``, ``operator``'s arithmetic, comparisons and
indexing, ``math``) and public ``Tensor`` methods, and reaches only the rebuilt modules, parameters and
buffers; anything else is refused when saving and when loading (:class:`rcprune.InvalidInstanceError`,
naming it).

Writing goes through :func:`rcprune.files.atomic_write_bytes` (a crash never leaves a half-written file).
"""
from __future__ import annotations

import builtins
import importlib
import inspect
import io
import json
import math
import operator
import os
import re
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from rcprune.files import atomic_write_bytes
from rcprune.validation import InvalidInstanceError

from rcprune.torch.compact_forms import RCConv2d
from rcprune.torch.masking import is_masked

__all__ = ["save_compacted", "load_compacted", "compacted_payload", "rebuild", "check_path", "FORMAT", "VERSION"]

FORMAT = "rcprune-compacted-model"
VERSION = 1

# Functions a graph may call, by the module they are read from (the first that holds the object names it).
_FUNCTION_MODULES = {"operator": operator, "torch.nn.functional": F, "torch": torch, "math": math, "builtins": builtins}
_BUILTINS = frozenset({"getattr", "len", "int", "float", "bool", "abs", "min", "max"})
_OPERATORS = frozenset({  # arithmetic, comparison, indexing (not attrgetter, methodcaller, call: they reach anything)
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "neg", "pos", "abs", "invert", "inv",
    "and_", "or_", "xor", "lshift", "rshift", "eq", "ne", "lt", "le", "gt", "ge", "not_", "truth", "is_",
    "is_not", "getitem", "setitem", "contains", "concat", "index", "iadd", "isub", "imul", "itruediv",
    "ifloordiv", "imod", "ipow", "imatmul", "iand", "ior", "ixor", "ilshift", "irshift"})
_TORCH_DENIED = frozenset({"from_file", "load", "save"})
# Module classes: any of torch.nn's, plus rcprune's compacted forms.
_CLASS_MODULES = ("torch.nn.modules.", "rcprune.torch.compact_forms")
# Attributes that are caches: not saved, rebuilt empty.
_TRANSIENT: dict[type, dict[str, type]] = {RCConv2d: {"_gather_cache": dict}}
_BASE_ATTRS = frozenset(vars(nn.Module()))
_HOOKS = tuple(k for k in _BASE_ATTRS if "hook" in k and k != "_is_full_backward_hook")
_OPS = ("placeholder", "get_attr", "call_function", "call_method", "call_module", "output")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHILD = re.compile(r"^[A-Za-z0-9_]+$")   # a submodule's name (Sequential's children are "0", "1", ...)


class _Unsaveable(Exception):
    """Something a model holds that the file cannot describe (saving)."""


class _Corrupt(Exception):
    """Something a file holds that does not describe a model (loading)."""


# --- values: JSON with tags for what JSON lacks ------------------------------------------------------------


def _encode(value, nodes: bool = False):
    """``value`` as JSON: lists as lists, every other container or torch constant as a one-key object."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, fx.Node):
        if not nodes:
            raise _Unsaveable("a graph node outside the graph")
        return {"node": value.name}
    if isinstance(value, (tuple, torch.Size)):
        return {"tuple": [_encode(v, nodes) for v in value]}
    if isinstance(value, list):
        return [_encode(v, nodes) for v in value]
    if isinstance(value, dict):
        return {"dict": [[_encode(k, nodes), _encode(v, nodes)] for k, v in value.items()]}
    if isinstance(value, slice):
        return {"slice": [_encode(value.start, nodes), _encode(value.stop, nodes), _encode(value.step, nodes)]}
    if value is Ellipsis:
        return {"ellipsis": None}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"memory_format": str(value).removeprefix("torch.")}
    if isinstance(value, torch.layout):
        return {"layout": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    raise _Unsaveable(f"a value of type {type(value).__name__}")


def _torch_constant(name: str, kind: type):
    value = getattr(torch, name, None) if _NAME.match(str(name)) else None
    if not isinstance(value, kind):
        raise _Corrupt(f"unknown torch {kind.__name__} {name!r}")
    return value


def _decode(value, env: dict[str, fx.Node] | None = None):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, env) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise _Corrupt(f"unreadable value {value!r:.80}")
    (tag, body), = value.items()
    if tag == "node" and env is not None:
        if body not in env:
            raise _Corrupt(f"a node reads {body!r} before it is defined")
        return env[body]
    if tag == "tuple" and isinstance(body, list):
        return tuple(_decode(v, env) for v in body)
    if tag == "dict" and isinstance(body, list) and all(isinstance(kv, list) and len(kv) == 2 for kv in body):
        return {_decode(k, env): _decode(v, env) for k, v in body}
    if tag == "slice" and isinstance(body, list) and len(body) == 3:
        return slice(*(_decode(v, env) for v in body))
    if tag == "ellipsis":
        return Ellipsis
    if tag == "dtype":
        return _torch_constant(body, torch.dtype)
    if tag == "memory_format":
        return _torch_constant(body, torch.memory_format)
    if tag == "layout":
        return _torch_constant(body, torch.layout)
    if tag == "device":
        try:
            return torch.device(str(body))
        except RuntimeError:
            raise _Corrupt(f"unknown device {body!r:.40}") from None
    raise _Corrupt(f"unreadable value {value!r:.80}")


# --- what a graph may call -----------------------------------------------------------------------------


def _allowed_function(module_name: str, name: str, obj) -> bool:
    if not _NAME.match(name) or name.startswith("_") or not callable(obj):
        return False
    if module_name == "builtins":
        return name in _BUILTINS
    if module_name == "operator":
        return name in _OPERATORS
    if module_name == "torch":
        return name not in _TORCH_DENIED and (inspect.isbuiltin(obj) or getattr(obj, "__module__", None) in (
            "torch.functional", "torch.nn.functional"))
    return True


def _function_name(fn) -> str:
    name = getattr(fn, "__name__", None)
    for module_name, module in _FUNCTION_MODULES.items():
        if isinstance(name, str) and getattr(module, name, None) is fn and _allowed_function(module_name, name, fn):
            return f"{module_name}.{name}"
    raise _Unsaveable(f"the function {getattr(fn, '__module__', '?')}.{name or repr(fn)}, which is not a torch, "
                      "torch.nn.functional, operator or math function")


def _function(qualified) -> Any:
    module_name, _, name = str(qualified).rpartition(".")
    module = _FUNCTION_MODULES.get(module_name)
    obj = getattr(module, name, None) if module is not None and _NAME.match(name) else None
    if obj is None or not _allowed_function(module_name, name, obj):
        raise _Corrupt(f"the graph calls {qualified!r:.80}, which is not an allowed function")
    return obj


def _method_allowed(name) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name)) and not name.startswith("_") \
        and callable(getattr(torch.Tensor, name, None))


def _class_name(cls: type) -> str:
    if not (cls.__module__.startswith(_CLASS_MODULES) or cls is nn.Module) or "." in cls.__qualname__ \
            or getattr(importlib.import_module(cls.__module__), cls.__qualname__, None) is not cls:
        raise _Unsaveable(f"its class {cls.__module__}.{cls.__qualname__}, which is neither a torch.nn module "
                          "nor one of rcprune's compacted forms")
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(qualified) -> type:
    module_name, _, name = str(qualified).partition(":")
    if not (module_name.startswith(_CLASS_MODULES) or module_name == "torch.nn.modules.module") \
            or not all(_NAME.match(p) for p in module_name.split(".")) or not _NAME.match(name):
        raise _Corrupt(f"module class {qualified!r:.80} is not allowed")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise _Corrupt(f"module class {qualified!r:.80} is not known") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == module_name) \
            or issubclass(cls, fx.GraphModule):
        raise _Corrupt(f"module class {qualified!r:.80} is not allowed")
    return cls


# --- saving ----------------------------------------------------------------------------------------------


def _tensor_key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe_module(path: str, module: nn.Module, tensors: dict[str, torch.Tensor], root: bool) -> dict:
    where = f"module {path!r}" if path else "the model"
    if any(getattr(module, h, None) for h in _HOOKS):
        raise InvalidInstanceError(f"cannot save {where}: it has hooks (code, which the file cannot hold); "
                                   "remove them first")
    entry: dict[str, Any] = {"path": path, "training": bool(module.training)}
    if not root:
        try:
            entry["class"] = _class_name(type(module))
        except _Unsaveable as exc:
            raise InvalidInstanceError(f"cannot save {where}: {exc}") from None
        transient = _TRANSIENT.get(type(module), {})
        attrs = {}
        for k, v in vars(module).items():
            if k in _BASE_ATTRS or k in transient:
                continue
            try:
                attrs[k] = _encode(v)
            except _Unsaveable as exc:
                raise InvalidInstanceError(f"cannot save {where}: its attribute {k!r} is {exc}") from None
        entry["attrs"] = attrs
    entry["params"] = {}
    for name, p in module._parameters.items():
        entry["params"][name] = None if p is None else {"requires_grad": bool(p.requires_grad)}
        if p is not None:
            tensors[_tensor_key(path, name)] = p.detach()
    entry["buffers"] = {}
    for name, b in module._buffers.items():
        entry["buffers"][name] = None if b is None else {"persistent": name not in module._non_persistent_buffers_set}
        if b is not None:
            tensors[_tensor_key(path, name)] = b.detach()
    return entry


def _describe_node(node: fx.Node) -> dict:
    target = node.target
    try:
        if node.op == "call_function":
            target = {"function": _function_name(target)}
        elif node.op == "call_method" and not _method_allowed(target):
            raise _Unsaveable(f"the method {target!r}, which is not a public Tensor method")
        args, kwargs = _encode(node.args, nodes=True), _encode(node.kwargs, nodes=True)
    except _Unsaveable as exc:
        raise InvalidInstanceError(f"cannot save node {node.name!r} of the graph: it calls or holds {exc}") from None
    return {"name": node.name, "op": node.op, "target": target, "args": args, "kwargs": kwargs}


def compacted_payload(model: fx.GraphModule) -> dict:
    """What :func:`save_compacted` writes: ``{"format", "version", "meta" (a JSON string), "tensors"}``
    (the tensors are ``model``'s own, detached), checked to rebuild."""
    if not isinstance(model, fx.GraphModule):
        raise InvalidInstanceError(
            f"save_compacted takes the torch.fx.GraphModule rcprune.torch.compact returns, got {type(model).__name__} "
            "(rcprune.torch.export(..., format='torch') traces other models first)")
    if is_masked(model):
        raise InvalidInstanceError("the model is masked, not compacted: call rcprune.torch.compact first "
                                   "(or rcprune.torch.bake to keep the dense, masked weights)")
    tensors: dict[str, torch.Tensor] = {}
    modules, seen = [], {}
    for path, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen:
            modules.append({"path": path, "same_as": seen[id(module)]})
            continue
        seen[id(module)] = path
        modules.append(_describe_module(path, module, tensors, root=module is model))
    meta = {"class_name": type(model).__name__ if _NAME.match(type(model).__name__) else "CompactModel",
            "modules": modules, "graph": [_describe_node(n) for n in model.graph.nodes]}
    payload = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta), "tensors": tensors}
    rebuild(payload, "cannot save the model")   # a save that succeeds is a file that loads
    return payload


def check_path(path, *, writing: bool) -> Path:
    """``path`` as a ``Path``: a non-empty str or path-like without NUL bytes; for writing, not a folder."""
    if not isinstance(path, (str, os.PathLike)) or not str(path) or "\x00" in str(path):
        raise InvalidInstanceError(f"path must be a file path, got {path!r:.80}")
    path = Path(path)
    if writing and path.is_dir():
        raise InvalidInstanceError(f"path {str(path)!r} is a folder, not a file")
    return path


def save_compacted(model: fx.GraphModule, path: str | Path) -> Path:
    """Write a compacted model to ``path`` without pickle; :func:`load_compacted` reads it back.

    Parameters
    ----------
    model : torch.fx.GraphModule
        What :func:`rcprune.torch.compact` returns (or any ``GraphModule`` of ``torch.nn`` modules and
        rcprune's compacted forms calling ``torch``, ``torch.nn.functional``, ``operator`` and ``math``
        functions and ``Tensor`` methods). Not modified.
    path : str or Path
        Written atomically (a temporary file in the same folder, then a rename).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidInstanceError
        For a model that is not a ``GraphModule``, is masked (compact it first), or holds a module class,
        function, attribute or hook the file cannot describe (named in the message).
    """
    path = check_path(path, writing=True)
    payload = compacted_payload(model)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


# --- loading ---------------------------------------------------------------------------------------------


def _read(path: Path, map_location) -> dict:
    if not path.is_file():
        raise InvalidInstanceError(f"compacted model file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:   # zip, pickle-refusal and unpickler errors: a damaged or foreign file fails in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InvalidInstanceError(f"corrupt compacted model file {str(path)!r}: torch.load(weights_only=True) "
                                   f"failed ({type(exc).__name__}: {first[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InvalidInstanceError(f"{str(path)!r} is not an rcprune compacted model file "
                                   "(written by rcprune.torch.save_compacted or export(..., format='torch'))")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInstanceError(f"corrupt compacted model file {str(path)!r}: bad format version {version!r:.40}")
    if version > VERSION:
        raise InvalidInstanceError(f"compacted model file {str(path)!r} has format version {version}, newer than "
                                   f"this rcprune reads ({VERSION}): upgrade rcprune")
    if not isinstance(payload.get("meta"), str) or not isinstance(payload.get("tensors"), dict):
        raise InvalidInstanceError(f"corrupt compacted model file {str(path)!r}: missing meta or tensors")
    return payload


def _build_module(entry: dict, tensors: dict, used: set) -> nn.Module:
    path = entry["path"]
    if path:
        cls = _class(entry.get("class"))
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        attrs = entry.get("attrs", {})
        if not isinstance(attrs, dict):
            raise _Corrupt(f"module {path!r}: attributes must be an object")
        for k, v in attrs.items():
            if not _NAME.match(k) or k in _BASE_ATTRS or (k.startswith("__") and k.endswith("__")):
                raise _Corrupt(f"module {path!r}: attribute name {k!r:.40} is not allowed")
            object.__setattr__(module, k, _decode(v))
        for k, kind in _TRANSIENT.get(cls, {}).items():
            object.__setattr__(module, k, kind())
    else:
        module = nn.Module()
    module.training = bool(entry.get("training", True))

    def tensor(name):
        key = _tensor_key(path, name)
        t = tensors.get(key)
        if not isinstance(t, torch.Tensor):
            raise _Corrupt(f"tensor {key!r} is missing")
        used.add(key)
        return t

    for name, spec in entry.get("params", {}).items():
        if not _NAME.match(name):
            raise _Corrupt(f"module {path!r}: parameter name {name!r:.40} is not allowed")
        module.register_parameter(name, None if spec is None else nn.Parameter(
            tensor(name), requires_grad=bool(spec.get("requires_grad", True))))
    for name, spec in entry.get("buffers", {}).items():
        if not _NAME.match(name):
            raise _Corrupt(f"module {path!r}: buffer name {name!r:.40} is not allowed")
        module.register_buffer(name, None if spec is None else tensor(name),
                               persistent=True if spec is None else bool(spec.get("persistent", True)))
    return module


def _check_target(op: str, target: str, built: dict[str, nn.Module]) -> None:
    """A ``call_module`` target names a rebuilt module; a ``get_attr`` target one of their modules,
    parameters or buffers (nothing else of theirs: no attribute or class is reachable from the graph)."""
    parts = target.split(".")
    if not all(_CHILD.match(p) and not p.startswith("__") for p in parts):
        raise _Corrupt(f"{op} target {target!r:.80} is not allowed")
    if op == "call_module":
        ok = target in built
    else:
        parent, _, name = target.rpartition(".")
        ok = target in built or (parent in built and (name in built[parent]._parameters
                                                      or name in built[parent]._buffers))
    if not ok:
        raise _Corrupt(f"{op} target {target!r:.80} names no module, parameter or buffer of the file")


def _build_graph(nodes: list, built: dict[str, nn.Module]) -> fx.Graph:
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for entry in nodes:
        op, target, name = entry.get("op"), entry.get("target"), entry.get("name")
        if op not in _OPS or not isinstance(name, str):
            raise _Corrupt(f"node {name!r:.40}: unknown op {op!r:.40}")
        if op == "call_function":
            if not isinstance(target, dict) or set(target) != {"function"}:
                raise _Corrupt(f"node {name!r}: bad function target")
            target = _function(target["function"])
        elif op == "call_method" and not _method_allowed(target):
            raise _Corrupt(f"node {name!r}: method {target!r:.40} is not a public Tensor method")
        elif not isinstance(target, str):
            raise _Corrupt(f"node {name!r}: bad target")
        elif op in ("call_module", "get_attr"):
            _check_target(op, target, built)
        args, kwargs = _decode(entry.get("args", {"tuple": []}), env), _decode(entry.get("kwargs", {"dict": []}), env)
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise _Corrupt(f"node {name!r}: bad arguments")
        if target is builtins.getattr and (len(args) != 2 or not isinstance(args[1], str) or args[1].startswith("_")):
            raise _Corrupt(f"node {name!r}: getattr of a private attribute")
        if op == "output":
            graph.output(args[0] if args else None)
            continue
        env[name] = graph.create_node(op, target, args, kwargs, name=name)
    graph.lint()
    return graph


def rebuild(payload: dict, context: str = "cannot rebuild the model") -> fx.GraphModule:
    """The model a payload (:func:`compacted_payload`, or a file's content) describes; an
    :class:`InvalidInstanceError` starting with ``context`` names what does not fit."""
    try:
        return _rebuild(payload)
    except _Corrupt as exc:
        raise InvalidInstanceError(f"{context}: {exc}") from None


def _rebuild(payload: dict) -> fx.GraphModule:
    tensors = payload["tensors"]
    try:
        meta = json.loads(payload["meta"])
        if not isinstance(meta, dict) or not isinstance(meta.get("modules"), list) \
                or not isinstance(meta.get("graph"), list):
            raise _Corrupt("meta must hold modules and graph")
        built: dict[str, nn.Module] = {}
        used: set[str] = set()
        for entry in meta["modules"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise _Corrupt("bad module entry")
            p = entry["path"]
            if p in built or (p == "") != (not built):
                raise _Corrupt(f"module {p!r} out of order")
            module = built[entry["same_as"]] if "same_as" in entry and entry["same_as"] in built \
                else _build_module(entry, tensors, used)
            if p:
                parent, _, name = p.rpartition(".")
                if parent not in built or not _CHILD.match(name):
                    raise _Corrupt(f"module {p!r} has no parent")
                built[parent].add_module(name, module)
            built[p] = module
        extra = set(tensors) - used
        if extra:
            raise _Corrupt(f"tensor(s) that no module holds: {', '.join(sorted(extra)[:5])}")
        name = meta.get("class_name", "CompactModel")
        graph = _build_graph(meta["graph"], built)
        model = fx.GraphModule(built[""], graph, class_name=name if isinstance(name, str) and _NAME.match(name)
                               else "CompactModel")
        modes = {e["path"]: bool(e.get("training", True)) for e in meta["modules"] if "same_as" not in e}
        for p, module in model.named_modules():   # GraphModule makes its own containers: give them their modes
            module.training = modes.get(p, module.training)
    except _Corrupt:
        raise
    except json.JSONDecodeError as exc:
        raise _Corrupt(f"meta is not valid JSON ({exc})") from None
    except Exception as exc:   # a graph or module that does not fit together
        raise _Corrupt(f"{type(exc).__name__}: {str(exc)[:300]}") from None
    return model


def load_compacted(path: str | Path, map_location: str | torch.device = "cpu") -> fx.GraphModule:
    """Load a model written by :func:`save_compacted` (or ``rcprune.torch.export(..., format="torch")``).

    The file is read by ``torch.load(weights_only=True)`` (no pickle); each module is rebuilt from its
    recorded class and attributes, and the graph from its recorded nodes, so the result computes what
    the saved model computed, bit for bit, and runs, trains, ``torch.export``-s and saves again like it.

    Parameters
    ----------
    path : str or Path
    map_location : str or torch.device
        Where the tensors go (``torch.load``'s ``map_location``); default the CPU.

    Returns
    -------
    torch.fx.GraphModule
        Each module in the train or eval mode it was saved in.

    Raises
    ------
    InvalidInstanceError
        For a missing, truncated or corrupt file, a file of another kind or a newer format version, or one
        naming a module class or function that is not allowed (the message says which).
    """
    path = check_path(path, writing=False)
    if isinstance(map_location, str):
        try:
            map_location = torch.device(map_location)
        except (RuntimeError, ValueError):
            raise InvalidInstanceError(f"map_location must be a device, got {map_location!r:.80}") from None
    if not isinstance(map_location, torch.device):
        raise InvalidInstanceError(f"map_location must be a device (str or torch.device), got {map_location!r:.80}")
    try:
        torch.empty(0, device=map_location)
    except Exception as exc:
        raise InvalidInstanceError(f"map_location {str(map_location)!r} is not available here ({type(exc).__name__})") from None
    return rebuild(_read(path, map_location), f"corrupt compacted model file {str(path)!r}")
