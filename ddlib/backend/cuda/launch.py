"""Launch arithmetic in one place: how many blocks of how many threads cover a shape."""

TPB_1D = 256  # threads per block for elementwise kernels (8 warps)
TILE = 16  # edge of the square shared-memory tile in the tiled matmul (256 threads)


def grid_1d(n: int, tpb: int = TPB_1D):
    """(blocks, threads) so that blocks * threads >= n, at least one block."""
    return max(1, (n + tpb - 1) // tpb), tpb


def grid_2d(rows: int, cols: int, tile: int = TILE):
    """((blocks_x, blocks_y), (tile, tile)) covering a rows x cols output, x along columns."""
    return (max(1, (cols + tile - 1) // tile), max(1, (rows + tile - 1) // tile)), (tile, tile)
