"""Weight sharing, gap + Huffman coding and the compressed file (Sec. 3.7.3)."""

import os

import numpy as np
import pytest

from ddlib import compress, optim
from ddlib.compress import coding, prune
from ddlib.compress.fileformat import HEADER, CompressedFileError
from ddlib.data import load_digits
from ddlib.layers import mlp
from ddlib.losses import SoftmaxCrossEntropy
from ddlib.train import fit, predict


def test_kmeans_matches_sklearn_from_the_same_start():
    from sklearn.cluster import KMeans

    # uniform data with linear init: no cluster empties (scikit-learn would move an
    # empty cluster, we keep it), so both run plain Lloyd from the same centroids
    v = np.random.default_rng(0).uniform(-1.0, 1.0, size=3000)
    c, lab = compress.kmeans_1d(v, 16)
    assert np.bincount(lab, minlength=16).min() > 0
    ours = ((v - c[lab]) ** 2).sum()
    km = KMeans(16, init=np.linspace(v.min(), v.max(), 16)[:, None], n_init=1,
                max_iter=300, tol=0).fit(v[:, None])
    assert ours == pytest.approx(km.inertia_, rel=1e-6)
    assert np.all(np.diff(c) > 0)
    for init in ("forgy", "density"):
        c2, _ = compress.kmeans_1d(v, 16, init=init, seed=1)
        assert c2.size == 16
    with pytest.raises(ValueError, match="init"):
        compress.kmeans_1d(v, 4, init="kmeans++")


def test_gap_round_trip_with_fillers():
    rng = np.random.default_rng(1)
    for bits in (1, 2, 3, 5):
        kept = rng.random(500) < 0.05
        syms = rng.integers(0, 8, kept.sum())
        g, s = coding.gap_encode(kept, syms, bits, filler=8)
        assert g.max() < 2 ** bits
        pos, back = coding.gap_decode(g, s, 8, 500)
        np.testing.assert_array_equal(pos, np.flatnonzero(kept))
        np.testing.assert_array_equal(back, syms)


def test_huffman_round_trip_and_lengths():
    syms = np.repeat([0, 1, 2, 3], [50, 25, 15, 10])
    bits, count, symbol = coding.huffman_encode(syms)
    np.testing.assert_array_equal(coding.huffman_decode(bits, count, symbol, 100), syms)
    lengths = coding.code_lengths(count, symbol)
    assert lengths[0] <= lengths[1] <= lengths[3]
    assert len(bits) == sum(lengths[s] for s in syms)
    one = coding.huffman_encode([4, 4, 4])
    assert coding.huffman_decode(*one, 3).tolist() == [4, 4, 4]


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    d = load_digits(seed=0, dtype=np.float32)
    net = mlp([64, 40, 10], rng=0, dtype=np.float32)
    loss = SoftmaxCrossEntropy()
    opt = optim.Optimizer(net, optim.adam(3e-3))
    fit(net, loss, opt, d.X_train, d.y_train, epochs=4, seed=0)
    prune.prune_model(net, 0.8)
    fit(net, loss, prune.attach(opt), d.X_train, d.y_train, epochs=2, seed=1)
    books = compress.share_weights(net, bits=[4, 3])
    compress.finetune(net, loss, optim.adam(1e-3), d.X_train, d.y_train, epochs=1, seed=2)
    path = tmp_path_factory.mktemp("c") / "net.ddlc"
    reports = compress.save(net, path)
    return net, books, path, reports, d


def test_sharing_and_finetuning_keep_the_codebook(compressed):
    net, books, _, _, _ = compressed
    for (layer, _), book in zip(prune.weight_layers(net), books):
        assert layer.codebook is book
        W = layer.params["W"]
        assert len(np.unique(W[W != 0])) <= layer.codebook.centroids.size
        np.testing.assert_array_equal(W, layer.codebook.weights())
        np.testing.assert_array_equal(W == 0, layer.masks["W"] == 0)


def test_centroid_gradient_sums_its_weights(compressed):
    from ddlib.compress.share import _Centroids

    net, _, _, _, d = compressed
    loss = SoftmaxCrossEntropy()
    loss.forward(net.forward(d.X_train[:64]), d.y_train[:64])
    net.backward(loss.backward())
    holder = _Centroids(net)
    holder.pull()
    layer = net.layers[0]
    idx, g = layer.codebook.index, layer.grads["W"]
    for k in range(layer.codebook.centroids.size):
        assert holder.grads["0.c"][k] == pytest.approx(g[idx == k].sum(), rel=1e-5, abs=1e-7)


def test_load_is_bit_identical_and_size_is_on_disk(compressed):
    net, _, path, reports, d = compressed
    back = compress.load(path)
    np.testing.assert_array_equal(predict(back, d.X_test), predict(net, d.X_test))
    body = sum(r.weight_bytes + r.index_bytes + r.table_bytes + r.bias_bytes for r in reports)
    assert os.path.getsize(path) == HEADER.size + 1 + 2 * 18 + 1 + body - 2 * 18 \
        or os.path.getsize(path) > body          # every stream counted, plus framing
    assert compress.dense_bytes(net) / os.path.getsize(path) > 5


def test_fuzzed_files_always_raise(compressed, tmp_path):
    _, _, path, _, _ = compressed
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.ddlc"
    cases = [good[:n] for n in (0, 3, HEADER.size - 1, HEADER.size, len(good) // 2,
                                len(good) - 1)]
    cases.append(good + b"\0")
    for _ in range(200):
        b = bytearray(good)
        for i in rng.integers(0, len(b), rng.integers(1, 4)):
            b[i] ^= int(rng.integers(1, 256))
        cases.append(bytes(b))
    for case in cases:
        bad.write_bytes(case)
        with pytest.raises(CompressedFileError):
            compress.load(bad)


def test_save_refuses_what_it_cannot_store(tmp_path):
    net = mlp([4, 3, 2], rng=0, dtype=np.float32)
    with pytest.raises(ValueError, match="codebook"):
        compress.save(net, tmp_path / "x")
    compress.share_weights(net, bits=2)
    net.layers[0].params["W"][0, 0] += 1.0
    with pytest.raises(ValueError, match="no longer match"):
        compress.save(net, tmp_path / "x")
