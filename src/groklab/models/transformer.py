"""Decoder-only transformers of the grokking papers, with an exact fast path.

* Nanda et al. 2023 (arXiv 2301.05217): 1 layer, d_model 128, 4 heads of 32, d_mlp 512, ReLU,
  learned positions, no LayerNorm, no biases except the MLP's, weights ~ N(0, 1/d_model)
  (W_U ~ N(0, 1/d_vocab)); logits read at the ``=`` position.
* Power et al. 2022 (arXiv 2201.02177): 2 layers, d 128, 4 heads, LayerNorm (post- or pre-),
  dropout, causal attention.

Parameters use TransformerLens names and shapes: ``W_E`` (V, d), ``W_pos`` (n_ctx, d),
``W_Q/W_K/W_V`` (H, d, dh), ``W_O`` (H, dh, d), ``W_in`` (d, d_mlp), ``W_out`` (d_mlp, d),
``W_U`` (d, V). (Nanda's own code stores W_E transposed, as (d, V).)

The fast path (``fast=True``) computes exactly the same logits at the answer position, cheaper:
only the last position feeds the loss, so the last layer runs its query, MLP and unembedding
there alone; and the first layer's input is ``W_E[token] + W_pos[pos]``, so its LayerNorm and
Q/K/V projections are computed once per (position, token) on a small table and gathered.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from groklab.models.fused import can_fuse, gathered_weighted_sum
from groklab.models.hooks import HookedModule, HookPoint
from groklab.models.ops import attention_scores, attention_values, softmax_last, take_rows


def _act(name: str):
    return {"relu": F.relu, "gelu": F.gelu}[name]


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, causal: bool):
        super().__init__()
        self.n_heads, self.d_head, self.causal = n_heads, d_model // n_heads, causal
        shape = (n_heads, d_model, self.d_head)
        self.W_Q = nn.Parameter(torch.empty(shape))
        self.W_K = nn.Parameter(torch.empty(shape))
        self.W_V = nn.Parameter(torch.empty(shape))
        self.W_O = nn.Parameter(torch.empty(n_heads, self.d_head, d_model))
        self.hook_pattern = HookPoint()  # (B, H, Sq, S)
        self.hook_z = HookPoint()        # (B, Sq, H, dh)

    def project(self, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """(..., d) @ (H, d, dh) -> (..., H, dh) as one matmul."""
        H, d, dh = W.shape
        return (x @ W.permute(1, 0, 2).reshape(d, H * dh)).unflatten(-1, (H, dh))

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Sq, H, dh) for the last Sq positions, k/v (B, S, H, dh) -> (B, Sq, d)."""
        scores = attention_scores(q, k) / math.sqrt(q.shape[-1])                 # (B, H, Sq, S)
        return self.combine(scores, v)

    def combine(self, scores: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal softmax of scores (B, H, Sq, S) over values v (B, S, H, dh) -> (B, Sq, d)."""
        B, H, Sq, S = scores.shape
        if self.causal and Sq > 1:
            qpos = torch.arange(S - Sq, S, device=v.device)[:, None]
            mask = torch.arange(S, device=v.device)[None, :] > qpos
            scores = scores.masked_fill(mask, float("-inf"))
        pattern = self.hook_pattern(softmax_last(scores))
        z = self.hook_z(attention_values(pattern, v))                           # (B, Sq, H, dh)
        return self.out(z)

    def out(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Sq, H, dh) -> (B, Sq, d) through W_O."""
        return z.reshape(*z.shape[:2], -1) @ self.W_O.reshape(-1, self.W_O.shape[-1])

    def combine_last(self, scores: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``combine`` at the last query position with values gathered from a table: scores
        (H, S, B), values ``table[rows]`` for table (R, H, dh) and rows (B, S) -> (B, 1, d).

        On CPU, with no hook on the pattern or z, the weighted sum reads the table in place
        (``groklab.models.fused``) instead of gathering a (B, S, H, dh) copy of it."""
        hooked = self.hook_pattern._forward_hooks or self.hook_z._forward_hooks
        if hooked or not can_fuse(scores, table):
            return self.combine(scores.permute(2, 0, 1).unsqueeze(2), take_rows(table, rows))
        p = scores.softmax(1)                                                    # (H, S, B)
        return self.out(gathered_weighted_sum(p, table, rows).unsqueeze(1))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, act: str):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.act = _act(act)
        self.hook_pre = HookPoint()   # (..., d_mlp)
        self.hook_post = HookPoint()  # (..., d_mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        pre = self.hook_pre(torch.addmm(self.b_in, x.reshape(-1, x.shape[-1]), self.W_in).view(*lead, -1))
        post = self.hook_post(self.act(pre))
        return torch.addmm(self.b_out, post.reshape(-1, post.shape[-1]), self.W_out).view(x.shape)


class Block(nn.Module):
    def __init__(self, d_model, n_heads, d_mlp, act, norm, dropout, causal):
        super().__init__()
        self.norm = norm
        self.attn = Attention(d_model, n_heads, causal)
        self.mlp = MLP(d_model, d_mlp, act)
        if norm != "none":
            self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.hook_resid_mid = HookPoint()

    def attn_in(self, x: torch.Tensor) -> torch.Tensor:
        """What Q, K and V read: a per-position function of the residual."""
        return self.ln1(x) if self.norm == "pre" else x

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x (B, S, d) -> (B, S, d), or (B, 1, d) at the last position if ``last_only``."""
        h = self.attn_in(x)
        k = self.attn.project(h, self.attn.W_K)
        v = self.attn.project(h, self.attn.W_V)
        q = self.attn.project(h[:, -1:] if last_only else h, self.attn.W_Q)
        return self.finish(x[:, -1:] if last_only else x, self.attn.mix(q, k, v))

    def finish(self, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """Everything after attention: residual add, norms, MLP."""
        x = x + self.drop(attn_out)
        if self.norm == "post":
            x = self.ln1(x)
        x = self.hook_resid_mid(x)
        m = self.mlp(self.ln2(x) if self.norm == "pre" else x)
        x = x + self.drop(m)
        return self.ln2(x) if self.norm == "post" else x


class Transformer(HookedModule):
    """Token transformer reading logits at the last position.

    Input: tokens (B, n_ctx) long. Output: logits (B, d_vocab_out) at the last position.
    """

    def __init__(self, d_vocab: int, d_vocab_out: int, n_ctx: int = 3, n_layers: int = 1,
                 d_model: int = 128, n_heads: int = 4, d_mlp: int = 512, act: str = "relu",
                 norm: str = "none", dropout: float = 0.0, causal: bool = True,
                 init: str = "nanda", init_scale: float = 1.0, fast: bool = True, seed: int = 0):
        super().__init__()
        self.fast = fast
        self.norm = norm
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_mlp, act, norm, dropout, causal)
                                    for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(d_model) if norm == "pre" else None
        self.W_U = nn.Parameter(torch.empty(d_model, d_vocab_out))
        self.drop = nn.Dropout(dropout)
        self.hook_embed = HookPoint()        # (B, S, d)  W_E[tokens]
        self.hook_pos_embed = HookPoint()    # (S, d)
        self.hook_resid_final = HookPoint()  # (B, d) at the answer position
        self.hook_logits = HookPoint()       # (B, d_vocab_out)
        self.reset_parameters(init, init_scale, seed)
        self.setup_hooks()

    @torch.no_grad()
    def reset_parameters(self, init: str, init_scale: float, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        d = self.W_E.shape[1]
        for name, p in self.named_parameters():
            if name.endswith(("b_in", "b_out")) or ".ln" in name or name.startswith("ln_"):
                if p.dim() == 1 and ("weight" in name):
                    p.fill_(1.0)
                else:
                    p.zero_()
            elif init == "nanda":
                # Nanda's code: randn / sqrt(d_model) everywhere, W_U: randn / sqrt(d_vocab)
                fan = p.shape[-1] if name == "W_U" else d
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan))
            else:  # PyTorch defaults: embeddings N(0, 1), matrices U(±1/sqrt(fan_in))
                if name in ("W_E", "W_pos"):
                    p.copy_(torch.randn(p.shape, generator=g))
                else:
                    fan_in = p.shape[-2] if p.dim() == 2 else p.shape[1]
                    b = 1 / math.sqrt(fan_in)
                    p.copy_(torch.rand(p.shape, generator=g) * 2 * b - b)
            p.mul_(init_scale)

    def forward(self, tokens: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
        fast = self.fast if fast is None else fast
        n_layers = len(self.blocks)
        if fast and n_layers == 1 and not (self.training and self.drop.p > 0):
            x = self._one_layer_tables(tokens)
        else:
            x = self.hook_embed(take_rows(self.W_E, tokens)) + self.hook_pos_embed(self.W_pos[: tokens.shape[1]])
            x = self.drop(x)
            for i, block in enumerate(self.blocks):
                x = block(x, last_only=fast and i == n_layers - 1)
        x = x.squeeze(1) if x.shape[1] == 1 else x[:, -1]  # a view: select's backward writes zeros
        if self.ln_final is not None:
            x = self.ln_final(x)
        x = self.hook_resid_final(x)
        return self.hook_logits(x @ self.W_U)

    def _one_layer_tables(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact 1-layer forward at the answer position from (position, token) tables.

        The layer's input is W_E[token] + W_pos[pos], so (pre-)LN, Q, K and V are functions of
        (position, token): computed once on the (S, V) table. The query is read at the last
        position only, so an attention score is a function of (last token, position, token):
        a (H, V, S, V) table gathered per example (each head's row contiguous: gathering from a
        table with H innermost strode across memory, 0.4 ms against 0.03 for Nanda's). Returns
        the residual (B, 1, d) after the block.
        """
        B, S = tokens.shape
        block, attn = self.blocks[0], self.blocks[0].attn
        table = self.hook_embed(self.W_E)[None] + self.hook_pos_embed(self.W_pos[:S])[:, None]  # (S, V, d)
        V = table.shape[1]
        h = block.attn_in(table)
        q = attn.project(h[-1], attn.W_Q).transpose(0, 1) / math.sqrt(attn.d_head)  # (H, V, dh)
        k = attn.project(h, attn.W_K).flatten(0, 1).permute(1, 2, 0)             # (H, dh, S*V)
        score_tab = (q @ k).flatten(1)                                          # (H, V*S*V)
        pos = torch.arange(S, device=tokens.device)
        rows = pos * V + tokens                                                 # (B, S) into (S*V)
        keys = (tokens[:, -1:] * (S * V) + rows).T.reshape(-1)                  # (S*B,) into V*S*V
        scores = score_tab.index_select(1, keys).view(-1, S, B)                 # (H, S, B)
        attn_out = attn.combine_last(scores, attn.project(h, attn.W_V).flatten(0, 1), rows)  # (B, 1, d)
        x = take_rows(table[-1], tokens[:, -1:])                                # (B, 1, d)
        return block.finish(x, attn_out)
