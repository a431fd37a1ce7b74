"""Tests for vitutils.axial: each step equals full attention under a same-row (same-column) mask."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from vitutils import cost
from vitutils.attention import Attention, record_attention, set_fused_attn
from vitutils.axial import AxialAttention, AxialPositionEmbedding, axial_mask
from vitutils.block import Block
from vitutils.vit import ViT, count_parameters, vit_config


def masked_full(attn: Attention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Full attention over all N tokens with `attn`'s weights, restricted by a boolean (N, N) mask."""
    B, N, D = x.shape
    h = attn.num_heads
    q, k, v = attn.qkv(x).reshape(B, N, 3, h, D // h).permute(2, 0, 3, 1, 4)  # 3 × (B, h, N, d)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
    return attn.proj(out.transpose(1, 2).reshape(B, N, D))


def _module(grid, *, sum_axial_out=False, dim=32, heads=4, fused=True):
    torch.manual_seed(0)
    return AxialAttention(
        dim=dim, num_heads=heads, grid_size=grid, sum_axial_out=sum_axial_out, fused_attn=fused
    ).eval()


GRIDS = [(4, 4), (3, 5), (1, 6), (6, 1), (2, 2)]


def test_axial_mask_by_hand():
    mask = axial_mask((2, 3), "row")  # tokens 0 1 2 / 3 4 5
    assert mask[0].tolist() == [True, True, True, False, False, False]
    assert mask[4].tolist() == [False, False, False, True, True, True]
    col = axial_mask((2, 3), "col")
    assert col[1].tolist() == [False, True, False, False, True, False]
    assert (mask & col).equal(torch.eye(6, dtype=torch.bool))  # only the token itself is in both


@pytest.mark.parametrize("grid", GRIDS)
def test_row_step_equals_full_attention_with_a_row_mask(grid):
    gh, gw = grid
    axial = _module(grid)
    x = torch.randn(2, gh * gw, 32)
    with torch.no_grad():
        ours = axial.row(x.reshape(2 * gh, gw, 32)).reshape(2, gh * gw, 32)
        reference = masked_full(axial.row, x, axial_mask(grid, "row"))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("grid", GRIDS)
def test_column_step_equals_full_attention_with_a_column_mask(grid, batch):
    gh, gw = grid
    axial = _module(grid)
    x = torch.randn(batch, gh * gw, 32)
    with torch.no_grad():
        reference = masked_full(axial.col, x, axial_mask(grid, "col"))
        # The idea: the columns as sequences of their own, through `col`'s forward ...
        columns = x.reshape(batch, gh, gw, 32).transpose(1, 2).reshape(batch * gw, gh, 32)
        by_forward = axial.col(columns).reshape(batch, gw, gh, 32).transpose(1, 2)
        # ... and the module's column step, on views of the raster-order projections.
        by_views = axial._columns(x.reshape(batch, gh, gw, 32))
    torch.testing.assert_close(by_forward.reshape(batch, gh * gw, 32), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_views.reshape(batch, gh * gw, 32), reference, atol=1e-5, rtol=0)


def test_column_step_views_one_image_without_copies():
    axial = _module((4, 3))
    seen = []
    attend = axial.col.attend
    axial.col.attend = lambda q, k, v, bias=None: seen.append((q, k, v)) or attend(q, k, v, bias)
    with torch.no_grad():
        axial(torch.randn(1, 12, 32))
    ((q, k, v),) = seen
    assert q.shape == (3, 4, 4, 8)  # (B·gw, h, gh, d)
    # For one image the column queries, keys and values are strided views of one qkv tensor.
    assert not q.is_contiguous()
    assert (
        q.untyped_storage().data_ptr()
        == k.untyped_storage().data_ptr()
        == v.untyped_storage().data_ptr()
    )
    assert (
        q.stride()[2] == 3 * 3 * 32
    )  # the next token of a column is one grid row (gw · 3D) further


@pytest.mark.parametrize("sum_axial_out", [False, True])
@pytest.mark.parametrize("grid", GRIDS)
def test_module_equals_masked_full_attention(grid, sum_axial_out):
    gh, gw = grid
    axial = _module(grid, sum_axial_out=sum_axial_out)
    x = torch.randn(3, gh * gw, 32)
    row_mask, col_mask = axial_mask(grid, "row"), axial_mask(grid, "col")
    with torch.no_grad():
        rows = masked_full(axial.row, x, row_mask)
        if sum_axial_out:
            reference = rows + masked_full(axial.col, x, col_mask)
        else:
            reference = masked_full(axial.col, rows, col_mask)
        torch.testing.assert_close(axial(x), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_teaching_and_fused_paths_agree(grid):
    axial = _module(grid, fused=True)
    x = torch.randn(2, grid[0] * grid[1], 32)
    with torch.no_grad():
        fused = axial(x)
        set_fused_attn(axial, False)
        assert not axial.row.fused_attn and not axial.col.fused_attn
        torch.testing.assert_close(axial(x), fused, atol=1e-5, rtol=0)


def test_recorder_sees_both_steps_and_two_steps_reach_every_token():
    gh, gw = 3, 5
    N = gh * gw
    axial = _module((gh, gw))
    x = torch.randn(1, N, 32)
    with record_attention(axial) as weights, torch.no_grad():
        axial(x)
    assert list(weights) == ["row", "col"]
    assert weights["row"].shape == (gh, 4, gw, gw)  # (B·gh, h, gw, gw)
    assert weights["col"].shape == (gw, 4, gh, gh)  # (B·gw, h, gh, gh)
    # Scatter each step's weights (mean over heads) into an (N, N) matrix over raster positions.
    row = torch.zeros(N, N)
    col = torch.zeros(N, N)
    r, c = weights["row"].mean(1), weights["col"].mean(1)
    for i in range(gh):
        row[i * gw : (i + 1) * gw, i * gw : (i + 1) * gw] = r[i]
    for j in range(gw):
        idx = torch.arange(j, N, gw)
        col[idx[:, None], idx[None, :]] = c[j]
    assert ((row > 0) == axial_mask((gh, gw), "row")).all()  # one step: its row only
    assert ((col > 0) == axial_mask((gh, gw), "col")).all()
    composed = col @ row  # (N, N): query → column neighbour → row of that neighbour
    assert (composed > 0).all()  # after two steps, every token reaches every other
    torch.testing.assert_close(composed.sum(-1), torch.ones(N))


def test_analysis_scatters_each_step_like_a_loop_and_composes_them():
    from vitutils.analysis import axial_attention, axial_reach, axial_to_full

    gh, gw, B, h = 3, 4, 2, 4
    N = gh * gw
    axial = _module((gh, gw))
    with record_attention(axial) as weights, torch.no_grad():
        axial(torch.randn(B, N, 32))
    row, col = (
        axial_to_full(weights["row"], (gh, gw), "row"),
        axial_to_full(weights["col"], (gh, gw), "col"),
    )
    assert row.shape == col.shape == (B, h, N, N)
    expected_row, expected_col = torch.zeros(B, h, N, N), torch.zeros(B, h, N, N)
    for b in range(B):  # by hand: grid row i of image b is record b·gh + i; column j is b·gw + j
        for i in range(gh):
            expected_row[b, :, i * gw : (i + 1) * gw, i * gw : (i + 1) * gw] = weights["row"][
                b * gh + i
            ]
        for j in range(gw):
            idx = torch.arange(j, N, gw)
            expected_col[b, :, idx[:, None], idx[None, :]] = weights["col"][b * gw + j]
    assert row.equal(expected_row) and col.equal(expected_col)
    # Both steps through the same recorder names a ViT gives them, in layer order.
    records = {"blocks.0.attn.row": weights["row"], "blocks.0.attn.col": weights["col"]}
    rows, cols = axial_attention(records, (gh, gw))
    assert rows.shape == (1, B, h, N, N) and rows[0].equal(row) and cols[0].equal(col)
    reach = axial_reach(row, col)  # (B, N, N)
    torch.testing.assert_close(reach, col.mean(1) @ row.mean(1))
    assert (reach > 0).all()
    torch.testing.assert_close(reach.sum(-1), torch.ones(B, N))
    with pytest.raises(ValueError, match=r"row weights of a 3 × 4 grid must be \(B·3, h, 4, 4\)"):
        axial_to_full(weights["col"], (gh, gw), "row")
    with pytest.raises(ValueError, match=r"expected \.row and \.col records"):
        axial_attention({"blocks.0.attn": weights["row"]}, (gh, gw))


def test_non_grid_input_and_bad_arguments_are_clear_errors():
    axial = _module((4, 4))
    with pytest.raises(ValueError, match=r"4 × 4 grid needs 16 tokens, got 17"):
        axial(torch.randn(1, 17, 32))
    with pytest.raises(ValueError, match="grid_size must be positive"):
        AxialAttention(dim=32, num_heads=4, grid_size=(0, 3))
    with pytest.raises(ValueError, match="axis must be 'row' or 'col'"):
        axial_mask((2, 2), "diagonal")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        AxialAttention(dim=30, num_heads=4, grid_size=2)


def test_state_dict_uses_timm_names_inside_each_step():
    keys = set(_module((2, 2)).state_dict())
    assert keys == {
        f"{step}.{layer}.{p}"
        for step in ("row", "col")
        for layer in ("qkv", "proj")
        for p in ("weight", "bias")
    }


def test_axial_position_embedding_is_row_plus_column():
    torch.manual_seed(0)
    pe = AxialPositionEmbedding((3, 5), 8)
    assert sum(p.numel() for p in pe.parameters()) == (3 + 5) * 8
    table = pe()
    assert table.shape == (1, 15, 8)
    for i in range(3):
        for j in range(5):
            torch.testing.assert_close(table[0, i * 5 + j], pe.row[0, i, 0] + pe.col[0, 0, j])
    assert 0.01 < table.std().item() < 0.03  # the scale of timm's learned embedding, std 0.02
    with pytest.raises(ValueError, match="embed_dim must be positive"):
        AxialPositionEmbedding(3, 0)


# ----------------------------------------------------------------------------- the axial ViT


def _axial_config(**overrides):
    fields = dict(attn_type="axial", class_token=False, global_pool="avg", pos_embed="axial")
    return vit_config("vit_cifar_tiny", depth=2, **{**fields, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [{}, {"img_size": (32, 48), "patch_size": 8}, {"sum_axial_out": True}, {"pos_embed": "learn"}],
)
def test_axial_vit_runs_records_and_counts(overrides):
    config = _axial_config(**overrides)
    torch.manual_seed(0)
    model = ViT(config).eval()
    H, W = (config.img_size,) * 2 if isinstance(config.img_size, int) else config.img_size
    gh, gw = model.patch_embed.grid_size
    x = torch.randn(2, 3, H, W)
    with record_attention(model) as weights, torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 10)
    assert list(weights) == [f"blocks.{i}.attn.{step}" for i in range(2) for step in ("row", "col")]
    assert weights["blocks.0.attn.row"].shape == (2 * gh, 3, gw, gw)
    assert weights["blocks.1.attn.col"].shape == (2 * gw, 3, gh, gh)
    with torch.no_grad():
        set_fused_attn(model, False)
        teaching = model(x)
    torch.testing.assert_close(teaching, logits, atol=1e-5, rtol=0)
    assert sum(cost.parameters(config).values()) == count_parameters(model)
    # FLOPs on the teaching path, where QKᵀ and AV are plain products the counter sees.
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert 2 * sum(cost.forward_flops(config).values()) == counter.get_total_flops()  # 2 images


def test_axial_attention_flops_by_hand():
    config = _axial_config(img_size=256, patch_size=4)  # a 64 × 64 grid, N = 4096
    N, D, L = 4096, 192, 2
    flops = cost.forward_flops(config)
    assert flops["attention (QKᵀ, AV)"] == L * 4 * N * (64 + 64) * D
    full = cost.forward_flops(config.replace(attn_type="full", pos_embed="learn"))
    assert full["attention (QKᵀ, AV)"] == L * 4 * N * N * D  # 32× more: N / (gh + gw)
    assert flops["qkv + proj"] == 2 * full["qkv + proj"]  # two steps, two sets of projections
    with pytest.raises(ValueError, match="memory formulas cover full attention"):
        cost.memory(config)


def test_axial_config_errors():
    with pytest.raises(ValueError, match="needs class_token=False"):
        vit_config("vit_cifar_tiny", attn_type="axial")
    with pytest.raises(ValueError, match="patch_drop_rate=0"):
        _axial_config(patch_drop_rate=0.5)
    with pytest.raises(ValueError, match="sum_axial_out=True needs attn_type='axial'"):
        vit_config("vit_cifar_tiny", sum_axial_out=True)
    with pytest.raises(ValueError, match="attn_type must be 'full' or 'axial'"):
        vit_config("vit_cifar_tiny", attn_type="local")
    with pytest.raises(ValueError, match="needs grid_size"):
        Block(dim=32, num_heads=4, attn_type="axial")


def test_axial_position_embedding_in_a_vit_with_a_class_token():
    # Full attention with an axial position embedding: the class token's row is zero.
    torch.manual_seed(0)
    model = ViT(vit_config("vit_cifar_tiny", depth=1, pos_embed="axial")).eval()
    tokens = model.patch_embed(torch.zeros(1, 3, 32, 32))  # (1, 64, D)
    with torch.no_grad():
        x = torch.cat([model.cls_token, tokens], dim=1) + torch.cat(
            [torch.zeros(1, 1, 192), model.axial_pos_embed()], dim=1
        )
        by_hand = model.forward_head(model.norm(model.blocks(x)))
        torch.testing.assert_close(model(torch.zeros(1, 3, 32, 32)), by_hand)
