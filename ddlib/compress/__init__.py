"""Model compression (Sec. 3.7.3): pruning, weight sharing, Huffman coding, sparse
storage and inference, a compressed file format, low rank, hashing, mimic models.

Modules: ``prune`` (masks, pruning with retraining), ``share`` (1-D k-means weight
sharing, centroid fine-tuning), ``coding`` (gap encoding, Huffman) and ``fileformat``
(``save``/``load`` of one compressed file), ``lowrank`` (truncated-SVD factorization into
two linear layers), ``mimic`` (students trained on a teacher's soft targets or logits),
``sparse`` (CSR storage; ``SparseLinear`` and the one-call ``SparseChain`` for inference)
and ``hashed`` (``HashedLinear``, the hashing trick).
"""

from . import coding, hashed, lowrank, mimic, prune, sparse
from .fileformat import CompressedFileError, dense_bytes, load, save
from .hashed import HashedLinear
from .share import Codebook, finetune, kmeans_1d, share_weights
from .sparse import CSR, SparseChain, SparseLinear, sparsify

__all__ = ["CSR", "CompressedFileError", "Codebook", "HashedLinear", "SparseChain", "SparseLinear", "coding",
           "dense_bytes", "finetune", "hashed", "kmeans_1d", "load", "lowrank", "mimic",
           "prune", "save", "share_weights", "sparse", "sparsify"]
