"""Sparse positions as gaps, and Huffman codes (Sec. 3.7.3; Deep Compression's storage).

Gap (relative-index) encoding: the kept entries of a flattened weight matrix are listed
in order, each with the distance from the previous entry (the first from position -1).
A gap is stored in ``bits`` bits as gap - 1, so gaps 1..2^bits fit; a longer gap is
bridged by *filler* entries, each a jump of 2^bits carrying the filler symbol instead
of a weight, exactly as Han, Mao and Dally pad with zeros.

Huffman coding uses ``bitarray.util.canonical_huffman``: a canonical code is fixed by
the number of codes of each length and the symbols in code order, which is all a file
has to store (``canonical_decode`` rebuilds the decoder from them).
"""

from __future__ import annotations

import numpy as np


def gap_encode(kept, symbols, bits, filler):
    """(gaps, syms): gap - 1 per entry (each < 2^bits) and its symbol, fillers included.

    kept: flat boolean array (True = a stored weight); symbols: the kept entries' codes,
    in order; filler: the symbol that marks a filler entry.

    >>> g, s = gap_encode(np.array([0, 0, 0, 0, 0, 1], bool), [7], bits=1, filler=9)
    >>> g.tolist(), s.tolist()
    ([1, 1, 1], [9, 9, 7])
    """
    pos = np.flatnonzero(np.asarray(kept, bool))
    symbols = np.asarray(symbols)
    if symbols.size != pos.size:
        raise ValueError(f"{symbols.size} symbols for {pos.size} kept entries")
    G = 1 << bits
    gaps = np.diff(np.concatenate(([-1], pos)))
    n_fill = (gaps - 1) // G                      # fillers needed before each entry
    total = pos.size + int(n_fill.sum())
    out_g = np.full(total, G - 1, np.int64)
    out_s = np.full(total, filler, np.int64)
    at = np.cumsum(n_fill + 1) - 1                # where each real entry lands
    out_g[at] = gaps - n_fill * G - 1
    out_s[at] = symbols
    return out_g, out_s


def gap_decode(gaps, syms, filler, n):
    """Inverse of ``gap_encode``: (positions, symbols) of the real entries; checks that
    every position lies below ``n``."""
    gaps = np.asarray(gaps, np.int64)
    pos = np.cumsum(gaps + 1) - 1
    real = np.asarray(syms) != filler
    if pos.size and pos[-1] >= n:
        raise ValueError(f"gap stream runs past the end of the matrix ({pos[-1]} >= {n})")
    return pos[real], np.asarray(syms)[real]


def huffman_encode(symbols):
    """(bitarray, count, symbol): a canonical Huffman code of the integer ``symbols``.

    ``count[L]`` is the number of codes of length L, ``symbol`` the symbols in code order.
    """
    from bitarray import bitarray
    from bitarray.util import canonical_huffman

    symbols = [int(s) for s in np.asarray(symbols).ravel()]
    bits = bitarray()
    if not symbols:
        return bits, [0], []
    freq = {}
    for s in symbols:
        freq[s] = freq.get(s, 0) + 1
    code, count, order = canonical_huffman(freq)
    bits.encode(code, symbols)
    return bits, list(count), list(order)


def huffman_decode(bits, count, symbol, n):
    """The first ``n`` symbols of ``bits`` under the canonical code (count, symbol).

    Raises ValueError when the stream ends early or holds anything after them.
    """
    from bitarray.util import canonical_decode

    if n == 0:
        return np.zeros(0, np.int64)
    out = np.fromiter(canonical_decode(bits, list(count), list(symbol)), np.int64)
    if out.size != n:
        raise ValueError(f"Huffman stream holds {out.size} symbols, expected {n}")
    return out


def code_lengths(count, symbol):
    """{symbol: code length} from a canonical table."""
    out, i = {}, 0
    for length, c in enumerate(count):
        for _ in range(c):
            out[symbol[i]] = length
            i += 1
    return out
