"""One file for a compressed model: ``save(model, path)`` and ``load(path)`` (Sec. 3.7.3).

The model is a ``Sequential`` of ``Linear`` layers whose weights went through
``share_weights`` (pruned or not) and parameter-free activations.  Layout, all integers
little-endian:

====================  =====================================================================
header (14 bytes)     magic ``b"DDLC"``; version u8 (1); dtype u8 (0 float32, 1 float64);
                      payload length u32; CRC-32 of the payload u32
payload               n_layers u8, then per layer a kind u8: 0 = Linear, 1 + i = the i-th
                      activation of ``ACTIVATION_NAMES``; a Linear carries
                      d_in u32, d_out u32, gap bits u8, K u16 (codebook size),
                      n_entries u32 (stored entries, fillers included),
                      the codebook (K values), the weight-index Huffman table, the gap
                      Huffman table, the two bit streams, the bias (d_out values)
Huffman table         max length L u8, count[1..L] u16 each, the symbols in code order
                      (u16 each; their number is the sum of the counts)
bit stream            n_bits u32, then ceil(n_bits / 8) bytes
====================  =====================================================================

Weight symbols are the codebook indices 0..K-1 and K for a filler entry (see
``coding.gap_encode``).  Codebook and bias are stored in the model's dtype, so the loaded
model computes bit for bit what the saved one did.  ``load`` checks the magic, the
version, the length and the checksum before it decodes anything, and every count while
decoding, and raises ``CompressedFileError`` (a ValueError) naming what is wrong: a
truncated or corrupted file never loads as a wrong model.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .coding import code_lengths, gap_decode, gap_encode, huffman_decode, huffman_encode

MAGIC = b"DDLC"
VERSION = 1
HEADER = struct.Struct("<4sBBII")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ACTIVATION_NAMES = ("identity", "sigmoid", "tanh", "relu", "hardtanh")


class CompressedFileError(ValueError):
    """A compressed model file that is truncated, corrupted or not one at all."""


@dataclass
class LayerReport:
    """What one Linear layer costs in the file (bytes), Deep Compression's table row."""

    shape: tuple
    kept: int
    weight_bits: int     # log2 K, before Huffman
    index_bits: int      # the gap width
    fillers: int
    weight_bytes: int    # Huffman-coded weight stream
    index_bytes: int     # Huffman-coded gap stream
    table_bytes: int     # codebook + the two Huffman tables
    bias_bytes: int
    weight_code_lengths: dict = field(default_factory=dict)
    gap_code_lengths: dict = field(default_factory=dict)


def _table(count, symbol):
    L = len(count) - 1
    return (struct.pack("<B", L) + struct.pack(f"<{L}H", *count[1:])
            + struct.pack(f"<{len(symbol)}H", *symbol))


def _stream(bits):
    return struct.pack("<I", len(bits)) + bits.tobytes()


def _encode_linear(layer, dtype, gap_bits):
    book = getattr(layer, "codebook", None)
    if book is None:
        raise ValueError(f"{layer.name}: no codebook; call compress.share_weights first")
    W, b = layer.params["W"], layer.params.get("b")
    if b is None:
        raise ValueError(f"{layer.name}: save needs Linear layers with a bias")
    if not np.array_equal(W, book.weights(W.dtype)):
        raise ValueError(f"{layer.name}: the weights no longer match the codebook (trained "
                         "after share_weights?); fine-tune with compress.finetune or "
                         "share the weights again")
    K = book.centroids.size
    kept = (book.index >= 0).ravel()
    syms = book.index.ravel()[kept]
    best = None
    for bits in ([gap_bits] if gap_bits else range(1, 9)):
        g, s = gap_encode(kept, syms, bits, filler=K)
        wb, wc, ws = huffman_encode(s)
        gb, gc, gs = huffman_encode(g)
        parts = [struct.pack("<BIIBHI", 0, W.shape[0], W.shape[1], bits, K, s.size),
                 book.centroids.astype(dtype).tobytes(), _table(wc, ws), _table(gc, gs),
                 _stream(wb), _stream(gb), b.astype(dtype).tobytes()]
        blob = b"".join(parts)
        if best is None or len(blob) < len(best[0]):
            rep = LayerReport(tuple(W.shape), int(kept.sum()), book.bits, bits,
                              int(s.size - kept.sum()), len(parts[4]), len(parts[5]),
                              len(parts[1]) + len(parts[2]) + len(parts[3]), len(parts[6]),
                              code_lengths(wc, ws), code_lengths(gc, gs))
            best = (blob, rep)
    return best


def save(model, path, gap_bits=None):
    """Write ``model`` (shared weights, see module) to ``path``; returns per-layer reports.

    gap_bits: the width of a stored gap; ``None`` tries 1..8 per layer, keeps the smallest.
    The size that counts is ``os.path.getsize(path)``.
    """
    from ..layers import Activation, Linear, Sequential

    if not isinstance(model, Sequential):
        raise TypeError(f"save expects a Sequential, got {type(model).__name__}")
    dtypes = {layer.params["W"].dtype for layer in model.layers if isinstance(layer, Linear)}
    if len(dtypes) != 1 or next(iter(dtypes)) not in DTYPES:
        raise TypeError(f"save needs every Linear in one dtype, float32 or float64; got {dtypes}")
    dtype = next(iter(dtypes))
    parts, reports = [struct.pack("<B", len(model.layers))], []
    for layer in model.layers:
        if type(layer) is Linear:
            blob, rep = _encode_linear(layer, dtype, gap_bits)
            parts.append(blob)
            reports.append(rep)
        elif isinstance(layer, Activation) and layer.kind in ACTIVATION_NAMES:
            parts.append(struct.pack("<B", 1 + ACTIVATION_NAMES.index(layer.kind)))
        else:
            raise TypeError(f"save: cannot store a {type(layer).__name__} layer (Linear and "
                            f"the activations {ACTIVATION_NAMES} only)")
    payload = b"".join(parts)
    head = HEADER.pack(MAGIC, VERSION, DTYPES.index(dtype), len(payload), zlib.crc32(payload))
    with open(path, "wb") as f:
        f.write(head + payload)
    return reports


class _Reader:
    def __init__(self, buf):
        self.buf, self.at = buf, 0

    def take(self, n, what):
        if n < 0 or self.at + n > len(self.buf):
            raise CompressedFileError(f"file ends inside {what}")
        out = self.buf[self.at:self.at + n]
        self.at += n
        return out

    def unpack(self, fmt, what):
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, what))

    def table(self, what):
        (L,) = self.unpack("B", what)
        count = [0, *self.unpack(f"{L}H", what)] if L else [0]
        symbol = list(self.unpack(f"{sum(count)}H", what)) if sum(count) else []
        return count, symbol

    def stream(self, what):
        from bitarray import bitarray

        (n,) = self.unpack("I", what)
        bits = bitarray()
        bits.frombytes(self.take((n + 7) // 8, what))
        return bits[:n]


def load(path):
    """Rebuild the model ``save`` wrote (a ``Sequential``); raises CompressedFileError."""
    from ..layers import ACTIVATION_LAYERS, Linear, Sequential

    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < HEADER.size:
        raise CompressedFileError(f"{path}: {len(buf)} bytes, shorter than the "
                                  f"{HEADER.size}-byte header")
    magic, version, dt, n, crc = HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise CompressedFileError(f"{path}: not a ddlib compressed model (magic {magic!r})")
    if version != VERSION:
        raise CompressedFileError(f"{path}: format version {version}, this ddlib reads {VERSION}")
    payload = buf[HEADER.size:]
    if len(payload) != n:
        raise CompressedFileError(f"{path}: payload is {len(payload)} bytes, the header says "
                                  f"{n} (truncated or padded file)")
    if zlib.crc32(payload) != crc:
        raise CompressedFileError(f"{path}: checksum mismatch, the file is corrupted")
    if dt >= len(DTYPES):
        raise CompressedFileError(f"{path}: unknown dtype code {dt}")
    dtype = DTYPES[dt]
    try:
        layers = _decode(_Reader(payload), dtype, Linear, ACTIVATION_LAYERS)
    except CompressedFileError as e:
        raise CompressedFileError(f"{path}: {e}") from None
    except (ValueError, struct.error, IndexError, KeyError) as e:  # a valid CRC over bad data
        raise CompressedFileError(f"{path}: undecodable payload ({e})") from None
    return Sequential(layers)


def _decode(r, dtype, Linear, ACTIVATION_LAYERS):
    (n_layers,) = r.unpack("B", "the layer count")
    layers = []
    for i in range(n_layers):
        (kind,) = r.unpack("B", f"layer {i}")
        if kind == 0:
            d_in, d_out, bits, K, n_entries = r.unpack("IIBHI", f"layer {i}'s shape")
            if not (d_in and d_out and 1 <= bits <= 16 and K):
                raise CompressedFileError(f"layer {i}: bad shape or widths")
            c = np.frombuffer(r.take(K * dtype.itemsize, f"layer {i}'s codebook"), dtype)
            wc, ws = r.table(f"layer {i}'s weight table")
            gc, gs = r.table(f"layer {i}'s gap table")
            s = huffman_decode(r.stream(f"layer {i}'s weights"), wc, ws, n_entries)
            g = huffman_decode(r.stream(f"layer {i}'s gaps"), gc, gs, n_entries)
            if np.any(s > K) or np.any(g >= (1 << bits)):
                raise CompressedFileError(f"layer {i}: symbols out of range")
            pos, idx = gap_decode(g, s, K, d_in * d_out)
            bias = np.frombuffer(r.take(d_out * dtype.itemsize, f"layer {i}'s bias"), dtype)
            layer = Linear(d_in, d_out, init="zeros", dtype=dtype)
            W = np.zeros(d_in * d_out, dtype)
            W[pos] = c[idx]
            layer.params["W"][...] = W.reshape(d_in, d_out)
            layer.params["b"][...] = bias
            layers.append(layer)
        elif 1 <= kind <= len(ACTIVATION_NAMES):
            layers.append(ACTIVATION_LAYERS[ACTIVATION_NAMES[kind - 1]]())
        else:
            raise CompressedFileError(f"layer {i}: unknown kind {kind}")
    if r.at != len(r.buf):
        raise CompressedFileError(f"{len(r.buf) - r.at} bytes left over after the last layer")
    return layers


def dense_bytes(model):
    """Bytes of the model's weights and biases stored as dense float32 arrays."""
    return sum(layer.params[k].size * 4 for _, layer, k in model.named_parameters())


def file_size(path):
    return os.path.getsize(path)
