"""Issue 13, exact resume: a run checkpointed mid-way by fit and resumed in a NEW process
ends bit for bit where the uninterrupted run ends, for every rule in optim.RULES, several
layer kinds (BatchNorm with momentum=None included), both CPU backends, int seeds and
Generators, a schedule and a PolyakAverage; corrupt and mismatched files are refused."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ddlib import checkpoint, layers, optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(r'''
    import json, sys
    import numpy as np
    import ddlib
    from ddlib import layers, losses, optim
    from ddlib.train import fit

    mode, folder, configs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(44, 4)); y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)

    def build(kind):
        if kind == "mlp":
            return layers.mlp([4, 6, 3], activation="tanh", rng=1)
        if kind == "bn_none":
            return layers.bn_mlp([4, 6, 3], rng=1, momentum=None)
        if kind == "bn":
            return layers.bn_mlp([4, 6, 3], rng=1, activation="relu")
        if kind == "maxout":
            return layers.Sequential(layers.Maxout(4, 5, 2, rng=1), layers.Linear(5, 3, rng=2))
        if kind == "prelu":
            return layers.Sequential(layers.Linear(4, 6, rng=1), layers.PReLU(width=6),
                                     layers.Linear(6, 3, rng=2))
        raise ValueError(kind)

    out = {}
    for c in configs:
        with ddlib.use_backend(c["backend"]):
            net = build(c["layer"])
            lr = optim.exponential_decay(0.05, k=0.3, steps_per_epoch=6)
            rule = optim.RULES[c["rule"]]
            try:
                r = rule(lr)
            except Exception:
                r = rule()
            opt = optim.Optimizer(net, r)
            avg = optim.PolyakAverage(opt, beta=0.9)
            seed = c["seed"] if c["seed_kind"] == "int" else np.random.default_rng(c["seed"])
            path = f"{folder}/{c['id']}.npz"
            kw = dict(epochs=3, batch_size=8, seed=seed, extra_state={"avg": avg},
                      on_step=lambda s, v, m: avg.update())
            if mode == "part":
                kw.update(checkpoint=path, checkpoint_every=c["at"], max_steps=c["at"])
            elif mode == "resume":
                kw.update(resume_from=path)
            hist = fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, **kw)
            state = {k: v.tolist() for k, v in net.state_dict().items()}
            state["avg"] = {k: v.tolist() for k, v in avg.average.items()}
            state["hist"] = [hist.step_loss, hist.epoch_train_loss, hist.examples_seen]
            state["steps"] = opt.steps
            state["bn"] = [m.batches_seen for m in net.modules() if hasattr(m, "batches_seen")]
            out[c["id"]] = state
    print(json.dumps(out))
''')


def _configs():
    out = []
    for i, rule in enumerate(optim.RULES):
        out.append({"rule": rule, "layer": "mlp", "backend": "numpy" if i % 2 else "cpu",
                    "seed_kind": "int" if i % 3 else "gen", "seed": 7, "at": 4 + i})
    for j, layer in enumerate(["bn_none", "bn", "maxout", "prelu"]):
        for sk in ("int", "gen"):
            out.append({"rule": "adam", "layer": layer, "backend": "cpu" if j % 2 else "numpy",
                        "seed_kind": sk, "seed": 3, "at": 6 if sk == "int" else 9})
    for k, c in enumerate(out):
        c["id"] = f"c{k}"
    return out


def _run(mode, folder, configs):
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(folder), json.dumps(configs)],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_resume_in_a_new_process_is_bit_identical(tmp_path):
    configs = _configs()
    full = _run("full", tmp_path, configs)
    _run("part", tmp_path, configs)
    resumed = _run("resume", tmp_path, configs)
    for c in configs:
        a, b = full[c["id"]], resumed[c["id"]]
        assert a == b, f"config {c} differs after resume"   # floats compared exactly


def _tiny():
    net = layers.mlp([3, 4, 2], rng=0)
    return net, optim.Optimizer(net, optim.momentum(0.1, 0.9))


def test_corrupt_and_truncated_files_are_refused_and_change_nothing(tmp_path):
    net, opt = _tiny()
    path = tmp_path / "a.npz"
    checkpoint.save(path, model=net, optimizer=opt)
    raw = path.read_bytes()
    other, oopt = _tiny()
    before = {k: v.copy() for k, v in other.state_dict().items()}
    bad = tmp_path / "bad.npz"
    for data in (raw[: len(raw) // 2], raw[:10], b"", b"not a zip at all" * 10,
                 raw[:200] + bytes([raw[200] ^ 0xFF]) + raw[201:]):
        bad.write_bytes(data)
        with pytest.raises(checkpoint.CheckpointError, match="bad.npz"):
            checkpoint.load(bad, model=other, optimizer=oopt)
        for k, v in other.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    with pytest.raises(checkpoint.CheckpointError, match="cannot be read"):
        checkpoint.load(tmp_path / "missing.npz", model=other)


def test_mismatched_model_or_rule_is_refused_before_anything_changes(tmp_path):
    net, opt = _tiny()
    path = tmp_path / "a.npz"
    checkpoint.save(path, model=net, optimizer=opt)
    big = layers.mlp([3, 5, 2], rng=0)
    with pytest.raises(checkpoint.CheckpointError, match="shape"):
        checkpoint.load(path, model=big)
    other = layers.mlp([3, 4, 2], rng=9)
    before = {k: v.copy() for k, v in other.state_dict().items()}
    with pytest.raises(checkpoint.CheckpointError, match="optimizer state"):
        checkpoint.load(path, model=other, optimizer=optim.Optimizer(other, optim.adam()))
    for k, v in other.state_dict().items():   # the model assignment was undone
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(checkpoint.CheckpointError, match="dtype"):
        checkpoint.load(path, model=layers.mlp([3, 4, 2], rng=0, dtype=np.float32))


def test_batchnorm_counters_round_trip(tmp_path):
    net = layers.bn_mlp([3, 4, 2], rng=0, momentum=None)
    net.forward(np.random.default_rng(0).normal(size=(5, 3)))
    path = checkpoint.save(tmp_path / "bn.npz", model=net)
    fresh = layers.bn_mlp([3, 4, 2], rng=0, momentum=None)
    checkpoint.load(path, model=fresh)
    assert [m.batches_seen for m in fresh.modules() if hasattr(m, "batches_seen")] == [1]
