"""Checkpoints for exact resume: one ``save`` and one ``load``, to one file.

A checkpoint holds, for a training run:

* ``model``: every parameter and buffer (BatchNorm's running statistics) by qualified
  name, each layer's integer counters (``BatchNorm.batches_seen``) and the state of any
  random Generator a layer holds;
* ``optimizer``: ``Optimizer.state_dict()`` (rule name, step count, which drives the
  learning-rate schedules, the rule's state, the lookahead iterate);
* ``extra``: ``{name: obj}`` of objects with ``state_dict``/``load_state_dict``
  (``PolyakAverage``, ``ReduceOnPlateau``);
* ``fit``: ``train.fit``'s position (epoch, next batch, the epoch's order, the shuffle's
  Generator state, the history), written by ``fit(checkpoint=..., checkpoint_every=...)``.

The file is a NumPy ``.npz`` archive read with ``allow_pickle=False``: arrays are stored
as arrays, everything else as one JSON document (``__meta__``), and a SHA-256 digest over
both is checked on load.  A truncated, corrupt or foreign file, or one saved for another
model, rule or set of extra objects, raises ``CheckpointError`` naming the file and what
is wrong, and **nothing is changed** (a load that fails half-way puts back what it had
already assigned): never a wrong model.

Example (the same run, interrupted and continued in another process, ends bit for bit
where the uninterrupted one does; ``train.fit(..., resume_from=path)`` does this for a
whole training loop)::

    from ddlib import checkpoint
    checkpoint.save("run.npz", model=net, optimizer=opt, extra={"avg": avg})
    # ... new process, same construction code ...
    checkpoint.load("run.npz", model=net, optimizer=opt, extra={"avg": avg})
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np

from .backend.arrays import assign, is_array, is_device, to_host

__all__ = ["CheckpointError", "save", "load", "model_state", "load_model_state"]

FORMAT = "ddlib-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or does not match what it is loaded into."""


# --------------------------------------------------------------------------- encoding

def _encode(obj, arrays, path):
    """JSON-able tree; arrays go into ``arrays`` under a generated key."""
    if is_array(obj):
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(to_host(obj))
        return {"__array__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"checkpoint: {path} has non-string keys {list(obj)}")
        if "__array__" in obj or "__tuple__" in obj:
            raise TypeError(f"checkpoint: {path} uses a reserved key")
        return {k: _encode(v, arrays, f"{path}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)  # repr round-trips exactly; inf/nan are written as JSON5 tokens
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"checkpoint: cannot store {path} of type {type(obj).__name__}")


def _decode(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def _digest(meta_bytes, arrays):
    h = hashlib.sha256(meta_bytes)
    for k in sorted(arrays):
        a = arrays[k]
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- the model

def _entries(model):
    """(name, dict, key) for every parameter and buffer of ``model``."""
    named = getattr(model, "named_parameters", None)
    if not callable(named):
        raise TypeError(f"checkpoint: model must have named_parameters(), got "
                        f"{type(model).__name__}")
    out = [(n, layer.params, k) for n, layer, k in named()]
    buffers = getattr(model, "named_buffers", None)
    if callable(buffers):
        out += [(n, layer.buffers, k) for n, layer, k in buffers()]
    else:
        out += [(k, model.buffers, k) for k in getattr(model, "buffers", {})]
    return out


def _modules(model):
    mods = getattr(model, "modules", None)
    return list(mods()) if callable(mods) else [model]


def model_state(model):
    """A host copy of everything that makes ``model`` continue exactly: arrays, counters
    and the random Generators its layers hold."""
    arrays = {n: np.array(to_host(store[k]), copy=True) for n, store, k in _entries(model)}
    counters, rngs = {}, {}
    for i, m in enumerate(_modules(model)):
        if callable(getattr(m, "counters", None)):
            counters[str(i)] = m.counters()
        for attr, v in sorted(vars(m).items()):
            if isinstance(v, np.random.Generator):
                rngs[f"{i}.{attr}"] = v.bit_generator.state
    return {"arrays": arrays, "counters": counters, "rngs": rngs}


def _check_model_state(model, state, where):
    """Every check of ``load_model_state``, before anything is assigned."""
    if not isinstance(state, dict) or set(state) != {"arrays", "counters", "rngs"}:
        raise CheckpointError(f"{where}: the model section is malformed")
    entries = _entries(model)
    names = [n for n, _, _ in entries]
    arrays = state["arrays"]
    missing, extra = sorted(set(names) - set(arrays)), sorted(set(arrays) - set(names))
    if missing or extra:
        raise CheckpointError(f"{where}: saved for another model: missing {missing}, "
                              f"unexpected {extra}")
    for n, store, k in entries:
        cur, v = store[k], arrays[n]
        if not isinstance(v, np.ndarray) or v.shape != tuple(cur.shape):
            raise CheckpointError(f"{where}: {n} has shape {np.shape(v)}, the model's is "
                                  f"{tuple(cur.shape)}")
        if v.dtype != np.dtype(cur.dtype):
            raise CheckpointError(f"{where}: {n} has dtype {v.dtype}, the model's is "
                                  f"{np.dtype(cur.dtype)}")
    mods = _modules(model)
    want = {str(i) for i, m in enumerate(mods) if callable(getattr(m, "counters", None))}
    if set(state["counters"]) != want:
        raise CheckpointError(f"{where}: counters saved for layers {sorted(state['counters'])}"
                              f", the model has them at {sorted(want)}")
    want_rngs = {f"{i}.{a}" for i, m in enumerate(mods) for a, v in vars(m).items()
                 if isinstance(v, np.random.Generator)}
    if set(state["rngs"]) != want_rngs:
        raise CheckpointError(f"{where}: random generators saved for {sorted(state['rngs'])}"
                              f", the model has {sorted(want_rngs)}")
    return entries, mods


def load_model_state(model, state, where="checkpoint"):
    """Put ``model_state`` into ``model``; everything is checked first (CheckpointError)."""
    entries, mods = _check_model_state(model, state, where)
    for n, store, k in entries:
        if is_device(store[k]):
            assign(store[k], state["arrays"][n])
        else:
            np.copyto(store[k], state["arrays"][n])
    for i, c in state["counters"].items():
        mods[int(i)].load_counters(c)
    for key, st in state["rngs"].items():
        i, attr = key.split(".", 1)
        getattr(mods[int(i)], attr).bit_generator.state = st


# --------------------------------------------------------------------------- save / load

def save(path, *, model=None, optimizer=None, extra=None, fit=None):
    """Write a checkpoint to ``path`` (a ``.npz`` file; written to a temporary file and
    renamed, so an interrupted save never leaves a half-written checkpoint).

    model: a Layer or Sequential; optimizer: an ``optim.Optimizer``; extra: ``{name: obj}``
    of objects with ``state_dict()``; fit: ``train.fit``'s loop state (fit passes it).
    """
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise TypeError(f"checkpoint.save: extra must be a dict name -> object, got "
                        f"{type(extra).__name__}")
    content = {}
    if model is not None:
        content["model"] = model_state(model)
    if optimizer is not None:
        content["optimizer"] = optimizer.state_dict()
    content["extra"] = {k: o.state_dict() for k, o in extra.items()}
    if fit is not None:
        content["fit"] = fit
    arrays = {}
    tree = _encode(content, arrays, "checkpoint")
    meta = json.dumps({"format": FORMAT, "version": VERSION, "content": tree},
                      sort_keys=True).encode()
    digest = _digest(meta, arrays)
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, __meta__=np.frombuffer(meta, np.uint8),
                 __digest__=np.frombuffer(digest.encode(), np.uint8), **arrays)
    os.replace(tmp, path)
    return path


def _read(path):
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path!r} cannot be read: {err}") from err
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            members = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zipfile.LargeZipFile,
            NotImplementedError) as err:
        raise CheckpointError(f"checkpoint {path!r} is corrupt or truncated (not a readable "
                              f".npz archive: {err})") from err
    except Exception as err:  # zlib errors and the like from a damaged member
        raise CheckpointError(f"checkpoint {path!r} is corrupt: {type(err).__name__}: "
                              f"{err}") from err
    if "__meta__" not in members or "__digest__" not in members:
        raise CheckpointError(f"checkpoint {path!r} is not a ddlib checkpoint (no __meta__)")
    meta = members.pop("__meta__").tobytes()
    digest = members.pop("__digest__").tobytes().decode("ascii", "replace")
    if _digest(meta, members) != digest:
        raise CheckpointError(f"checkpoint {path!r} is corrupt: its SHA-256 digest does not "
                              "match its contents")
    try:
        doc = json.loads(meta)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path!r} has an unreadable header: {err}") from err
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format {doc.get('format')!r} version "
                              f"{doc.get('version')!r}; expected {FORMAT!r} {VERSION}")
    return _decode(doc["content"], members)


def load(path, *, model=None, optimizer=None, extra=None):
    """Read ``path`` and restore what is given; returns the decoded content (a dict with
    the ``fit`` state when fit wrote it).

    Each object passed must have a matching section (a model for ``model``, the same rule
    for ``optimizer``, the same names in ``extra``).  Everything is validated before
    anything changes; if a later assignment still fails, what was already assigned is
    put back, and ``CheckpointError`` is raised.
    """
    where = f"checkpoint {os.fspath(path)!r}"
    content = _read(path)
    extra = {} if extra is None else extra
    if model is not None:
        if "model" not in content:
            raise CheckpointError(f"{where} holds no model")
        _check_model_state(model, content["model"], where)
    if optimizer is not None and "optimizer" not in content:
        raise CheckpointError(f"{where} holds no optimizer state")
    saved_extra = content.get("extra", {})
    if set(extra) - set(saved_extra):
        raise CheckpointError(f"{where} holds extra state for {sorted(saved_extra)}, asked "
                              f"for {sorted(extra)}")
    # take a copy of the current state, so that a failure half-way changes nothing
    undo = []
    if model is not None:
        before = model_state(model)
        undo.append(lambda: load_model_state(model, before, where))
    try:
        if model is not None:
            load_model_state(model, content["model"], where)
        if optimizer is not None:
            before_opt = optimizer.state_dict()
            try:
                optimizer.load_state_dict(_as_state(content["optimizer"]))
            except (ValueError, TypeError, KeyError) as err:
                raise CheckpointError(f"{where}: optimizer state does not match: {err}") from err
            undo.append(lambda: optimizer.load_state_dict(before_opt))
        for k, obj in extra.items():
            before_k = obj.state_dict()
            try:
                obj.load_state_dict(_as_state(saved_extra[k]))
            except (ValueError, TypeError, KeyError) as err:
                raise CheckpointError(f"{where}: extra state {k!r} does not match: "
                                      f"{err}") from err
            undo.append(lambda obj=obj, b=before_k: obj.load_state_dict(b))
    except BaseException:
        for fn in reversed(undo):
            fn()
        raise
    return content


def _as_state(tree):
    """Decoded JSON numbers back as the types the state_dicts hold (ints stay ints)."""
    return tree
