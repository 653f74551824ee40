"""moe_gemm's routing metadata under the Triton interpreter: the one-program kernel and the
three-kernel path build the same row blocks as the torch ops, and a sorted order that
holds every pair once, in its expert's run (padded or through the tile map)."""

import pytest

torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton")

from tasks.moe_gemm import launch  # noqa: E402

pytestmark = pytest.mark.interpret

#: (experts, pairs, BLOCK_M, tile map, TAIL_M): uneven counts, empty experts, an expert
#: with several blocks, remainders that a tail takes and one it cannot
CASES = [
    (8, 40, 16, False, 0),
    (8, 40, 16, True, 0),
    (8, 70, 16, True, 8),
    (5, 33, 4, True, 2),
    (16, 9, 16, False, 0),
    (3, 50, 8, True, 4),
]


def _ids(experts, pairs):
    """Expert ids with every count different: expert e takes about a share ∝ e + 1, and
    the last expert none."""
    gen = torch.Generator().manual_seed(experts * 1000 + pairs)
    weights = torch.arange(1, experts + 1, dtype=torch.float32)
    weights[-1] = 0.0
    return torch.multinomial(weights, pairs, replacement=True, generator=gen).to(torch.int32)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize(("experts", "pairs", "block_m", "tilemap", "tail_m"), CASES)
def test_triton_metadata_matches_the_torch_ops(experts, pairs, block_m, tilemap, tail_m, parallel):
    ids = _ids(experts, pairs)
    max_blocks = min(triton.cdiv(pairs, block_m) + experts, pairs)
    want_order, want_tiles, want_nblk = launch._route_torch(
        ids, pairs, experts, block_m, max_blocks, tilemap, tail_m
    )
    # 16 pairs a step: several steps of the one program, several programs of the three kernels
    order, tiles, nblk = launch._route_triton(
        ids, pairs, experts, block_m, max_blocks, tilemap, tail_m, parallel, step=16
    )
    n = int(want_nblk)
    assert int(nblk) == n
    width = 3 if tilemap else 1
    assert tiles[: n * width].tolist() == want_tiles.reshape(-1)[: n * width].tolist()
    # the same expert (or padding) at every position, every pair once; within an expert's
    # run the pairs may come in any order
    assert order.shape == want_order.shape
    assert sorted(order.tolist()) == sorted(want_order.tolist())
    assert _experts_at(order, ids).tolist() == _experts_at(want_order, ids).tolist()


def test_many_pairs_take_at_most_64_counting_chunks_and_match_the_torch_ops():
    # a prefill of 16384 tokens with k = 8, one pair more: chunks of 2048 pairs, not 1024
    experts, pairs, block_m, tail_m = 128, 131072 + 1, 128, 32
    ids = _ids(experts, pairs)
    max_blocks = min(triton.cdiv(pairs, block_m) + experts, pairs)
    want = launch._route_torch(ids, pairs, experts, block_m, max_blocks, True, tail_m)
    order, tiles, nblk = launch._route_triton(
        ids, pairs, experts, block_m, max_blocks, True, tail_m, True
    )
    n = int(want[2])
    assert int(nblk) == n
    assert tiles[: 3 * n].tolist() == want[1].reshape(-1)[: 3 * n].tolist()
    assert _experts_at(order, ids).tolist() == _experts_at(want[0], ids).tolist()
    assert sorted(order.tolist()) == sorted(want[0].tolist())


def _experts_at(order, ids):
    """The expert of the pair at each position of a sorted order, -1 for padding."""
    real = order < ids.numel()
    return torch.where(real, ids[order.long().clamp(max=ids.numel() - 1)], -1)
