"""Model compression (Sec. 3.7.3): pruning, weight sharing, Huffman coding, sparse
storage and inference, a compressed file format, low rank, hashing, mimic models.

Modules: ``prune`` (masks, pruning with retraining), ``share`` (1-D k-means weight
sharing, centroid fine-tuning), ``coding`` (gap encoding, Huffman) and ``fileformat``
(``save``/``load`` of one compressed file), ``lowrank`` (truncated-SVD factorization into
two linear layers) and ``mimic`` (students trained on a teacher's soft targets or logits).
"""

from . import coding, lowrank, mimic, prune
from .fileformat import CompressedFileError, dense_bytes, load, save
from .share import Codebook, finetune, kmeans_1d, share_weights

__all__ = ["CompressedFileError", "Codebook", "coding", "dense_bytes", "finetune",
           "kmeans_1d", "load", "lowrank", "mimic", "prune", "save", "share_weights"]
