"""A small vision transformer for 32x32 inputs (`vit_tiny`), written out here so the install stays torch-only
(no timm).

vit_tiny: 4x4 patches (64 tokens at 32x32) plus a class token, width 192, 9 pre-norm blocks of 3-head
self-attention and a GELU MLP of ratio 2, learned position embeddings, a final LayerNorm and a linear head
on the class token: 2,714,980 parameters at 100 classes. No dropout, no stochastic depth.

The zoo's contract (`ltkd.models.base`), read for a transformer: the stages are the patch embedding and
three groups of three blocks; `feats[i]` is stage i's patch tokens laid out as an (N, C, H/4, W/4) map (the
class token left out; every level has the same 8x8 resolution at 32x32), `preact_feats` are the same
tensors (no stage ends in a ReLU), and `pooled_feat` is the normed class token, the vector the classifier
reads, not an average of `feats[-1]`. With one resolution and no pyramid, ReviewKD has nothing to review:
the model is registered with `feature_pyramid=False` and the config check refuses that pairing. Inputs
of another size (TinyImageNet's 64x64) use the position embeddings resized bicubically to their grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltkd.models.base import FeatureNet, Features
from ltkd.models.registry import register_model


class Attention(nn.Module):
    """Multi-head self-attention: one qkv projection, scaled dot-product attention, an output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        assert dim % heads == 0, f"width {dim} is not a multiple of {heads} heads"
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, tokens, dim / heads)
        return self.proj(out.transpose(1, 2).reshape(n, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches projected to `dim` (a strided conv), a class token prepended, position
    embeddings added; (N, 3, H, W) -> (N, 1 + H/p * W/p, dim)."""

    def __init__(self, patch: int, dim: int, image_size: int) -> None:
        super().__init__()
        self.grid = image_size // patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, dim))

    def forward(self, x: Tensor) -> Tensor:
        patches = self.proj(x).flatten(2).transpose(1, 2)  # (N, tokens, dim)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding(patches.shape[1])

    def position_embedding(self, tokens: int) -> Tensor:
        """The position embeddings for `tokens` patches (a square grid): the learned ones, resized bicubically
        when the grid is not the training grid."""
        side = int(tokens**0.5)
        if side == self.grid:
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = grid.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)


class VisionTransformer(FeatureNet):
    """Patch embedding, then `depth` blocks in `groups` equal stages, a final LayerNorm and the linear
    classifier on the class token; forward returns `(logits, Features)` as the module docstring reads it."""

    def __init__(self, num_classes: int, *, image_size: int = 32, patch: int = 4, dim: int = 192, depth: int = 9,
                 heads: int = 3, mlp_ratio: float = 2.0, groups: int = 3) -> None:
        assert depth % groups == 0, f"depth {depth} does not split into {groups} stages"
        per_stage = depth // groups
        stages: list[nn.Module] = [PatchEmbed(patch, dim, image_size)]
        stages += [nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(per_stage))) for _ in range(groups)]
        super().__init__(stages, nn.Linear(dim, num_classes))
        self.patch = patch
        self.norm = nn.LayerNorm(dim)
        self.apply(_init_vit)
        nn.init.trunc_normal_(stages[0].pos_embed, std=0.02)
        nn.init.trunc_normal_(stages[0].cls_token, std=0.02)

    def forward(self, x: Tensor) -> tuple[Tensor, Features]:
        side_h, side_w = x.shape[2] // self.patch, x.shape[3] // self.patch
        feats: list[Tensor] = []
        for stage in self.stages:
            x = stage(x)
            # the patch tokens as an (N, C, h, w) map: a view, channels-last in memory
            feats.append(x[:, 1:].transpose(1, 2).reshape(x.shape[0], x.shape[2], side_h, side_w))
        pooled = self.norm(x)[:, 0]
        return self.forward_head(pooled), {"feats": feats, "preact_feats": list(feats), "pooled_feat": pooled}


@torch.no_grad()
def _init_vit(m: nn.Module) -> None:
    """The usual ViT init: truncated-normal (std 0.02) linear and patch weights, zero biases, LayerNorm 1/0."""
    if isinstance(m, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            m.bias.zero_()
    elif isinstance(m, nn.LayerNorm):
        m.weight.fill_(1.0)
        m.bias.zero_()


@register_model(feature_pyramid=False)
def vit_tiny(num_classes: int) -> VisionTransformer:
    """ViT for 32x32: patch 4, width 192, depth 9, 3 heads, MLP ratio 2 (2.71M parameters at 100 classes)."""
    return VisionTransformer(num_classes)
