"""Denoisers: `(x_t [B, h, D], actions [B, h, A], t [B]) -> x0_hat [B, h, D]`.

Both architectures are those of the PolyGRAD code: a residual MLP over the flattened trajectory
(the default) and a causal transformer with one token per step. The transformer also serves as
the autoregressive transformer world model (no time input).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RandomFourierTime(nn.Module):
    """Integer step t -> `[t, sin(2 pi f t), cos(2 pi f t)]` with fixed random frequencies f."""

    def __init__(self, frequencies: int = 8):
        super().__init__()
        self.register_buffer("freqs", torch.randn(frequencies))
        self.dim = 2 * frequencies + 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()[:, None]
        angles = 2 * math.pi * t * self.freqs
        return torch.cat([t, angles.sin(), angles.cos()], dim=-1)


class ResidualMLPDenoiser(nn.Module):
    """Flattened `[x_t, a]` -> Linear to E = max(in, 128) + time embedding -> Linear(E, W) ->
    `blocks` x (x + Linear(ReLU(LayerNorm(x)))) -> LayerNorm -> ReLU -> Linear(W, h * D)."""

    def __init__(self, rows: int, transition_dim: int, act_dim: int, width: int = 1024, blocks: int = 6):
        super().__init__()
        self.rows, self.transition_dim = rows, transition_dim
        in_dim = rows * (transition_dim + act_dim)
        embed = max(in_dim, 128)
        self.input = nn.Linear(in_dim, embed)
        self.time = RandomFourierTime()
        self.time_mlp = nn.Sequential(nn.Linear(self.time.dim, embed), nn.SiLU(), nn.Linear(embed, embed))
        self.body_in = nn.Linear(embed, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(blocks))
        self.linears = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, rows * transition_dim)

    def forward(self, x: torch.Tensor, act: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        h = self.input(torch.cat([x, act], dim=-1).reshape(batch, -1)) + self.time_mlp(self.time(t))
        h = self.body_in(h)
        for norm, linear in zip(self.norms, self.linears):
            h = h + linear(F.relu(norm(h)))
        return self.out(F.relu(self.out_norm(h))).view(batch, self.rows, self.transition_dim)


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The transformer's time embedding of integer steps `[B] -> [B, dim]`."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / max(half - 1, 1))
    angles = t.float()[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos(), angles.new_zeros(len(t), dim % 2)], dim=-1)


class Block(nn.Module):
    """Pre-LayerNorm transformer block with causal self-attention and a 4x GELU MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`cache` (a list, filled here with this block's keys and values) lets a later call pass
        only the next token: it then attends to the cached tokens and itself."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [batch, heads, tokens, head dim]
        if cache:
            if tokens != 1:
                raise ValueError("with a cache, pass one new token at a time")
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        if cache is not None:
            cache[:] = [k, v]
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=k.shape[2] == tokens)
        x = x + self.proj(attn.transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.mlp(self.norm2(x))


class TransformerDenoiser(nn.Module):
    """One token per step: Linear(D + A -> dim) + learned positions (+ sinusoidal time embedding,
    broadcast to all tokens); `layers` causal pre-LN blocks; no final LayerNorm; Linear(dim -> D)."""

    def __init__(self, rows: int, transition_dim: int, act_dim: int, dim: int = 312, layers: int = 6,
                 heads: int = 4, out_dim: int | None = None):
        super().__init__()
        self.dim = dim
        self.embed = nn.Linear(transition_dim + act_dim, dim)
        self.positions = nn.Parameter(torch.zeros(rows, dim))
        nn.init.normal_(self.positions, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.out = nn.Linear(dim, out_dim or transition_dim)

    def forward(self, x: torch.Tensor, act: torch.Tensor, t: torch.Tensor | None = None,
                caches: list[list[torch.Tensor]] | None = None, start: int = 0) -> torch.Tensor:
        """Tokens `start .. start + T - 1`; `caches` (one list per block) hold the earlier ones."""
        tokens = x.shape[1]
        h = self.embed(torch.cat([x, act], dim=-1)) + self.positions[start : start + tokens]
        if t is not None:
            h = h + sinusoidal_embedding(t, self.dim)[:, None]
        for i, block in enumerate(self.blocks):
            h = block(h, None if caches is None else caches[i])
        return self.out(h)
