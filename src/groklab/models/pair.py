"""The one-hidden-layer MLP of Google PAIR's grokking explorable (Pearce et al. 2023, "Do Machine
Learning Models Memorize or Generalize?", code: PAIR-code/ai-explorables, server-side/grokking/).

A tied embedding ``W_E`` (p, d) reads both operands; one shared bias-free projection ``W_in``
(d, h) maps each operand's embedding to h neurons, the two are summed and passed through ReLU;
a bias-free ``W_out`` (h, d) maps back to the embedding space and the logits are ``out · W_Eᵀ``
(the same tensor as the input embedding). p·d + 2·d·h parameters, nothing else (57,500 for
p = 67, d = 500, h = 24).

Init as their Haiku code: ``W_E`` VarianceScaling(2) (truncated normal, std √(2/p) after the
truncation correction); ``W_in``, ``W_out`` Haiku's Linear default, a normal of std 1/√fan_in
truncated at ±2 std (no correction, so their std is ≈0.88/√fan_in).

``tied=False`` is the MLP of the grokking-tickets paper (Minegishi, Iwasawa, Matsuo 2024, arXiv
2310.19470; code gouki510/Grokking-Tickets): the same network with its own unembedding ``W_U``
(d, p), p·d more parameters, and their init for the embeddings: ``W_E`` and ``W_U`` normal with
std 1/√p (read from their code); ``W_in``, ``W_out`` normal with std 1/√fan_in (our choice: the
projections' init was not read from their code).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from groklab.models.hooks import HookedModule, HookPoint
from groklab.models.ops import take_rows

_TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated at ±2 (Haiku's correction)


def truncated_normal(shape, std: float, g: torch.Generator) -> torch.Tensor:
    """N(0, std²) truncated at ±2 std, by the inverse CDF (works on the meta device too)."""
    lo = 0.5 * (1 + math.erf(-2 / math.sqrt(2)))
    u = lo + (1 - 2 * lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    return (torch.erfinv(2 * u - 1) * math.sqrt(2) * std).float()


class PairMLP(HookedModule):
    """Input: tokens (B, 3) ``[a, b, =]`` (``=`` ignored). Output: logits (B, p)."""

    def __init__(self, n_tokens: int, d_embed: int = 500, d_hidden: int = 24, act: str = "relu",
                 init_scale: float = 1.0, seed: int = 0, tied: bool = True):
        super().__init__()
        self.tied = tied
        self.W_E = nn.Parameter(torch.empty(n_tokens, d_embed))     # input (and, tied, output) embedding
        self.W_in = nn.Parameter(torch.empty(d_embed, d_hidden))    # shared by both operands
        self.W_out = nn.Parameter(torch.empty(d_hidden, d_embed))
        if not tied:
            self.W_U = nn.Parameter(torch.empty(d_embed, n_tokens))
        self.act = {"relu": F.relu, "gelu": F.gelu}[act]
        self.hook_pre = HookPoint()     # (B, h)  W_in·e_a + W_in·e_b
        self.hook_post = HookPoint()    # (B, h)  the neurons
        self.hook_out = HookPoint()     # (B, d)
        self.hook_logits = HookPoint()  # (B, p)
        self.reset_parameters(init_scale, seed)
        self.setup_hooks()

    @torch.no_grad()
    def reset_parameters(self, init_scale: float, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        p, d = self.W_E.shape
        h = self.W_out.shape[0]
        if self.tied:
            self.W_E.copy_(truncated_normal(self.W_E.shape, math.sqrt(2 / p) / _TRUNC_STD, g))
            self.W_in.copy_(truncated_normal(self.W_in.shape, 1 / math.sqrt(d), g))
            self.W_out.copy_(truncated_normal(self.W_out.shape, 1 / math.sqrt(h), g))
        else:
            for w, fan in ((self.W_E, p), (self.W_U, p), (self.W_in, d), (self.W_out, h)):
                w.copy_(torch.randn(w.shape, generator=g, dtype=torch.float64).float() / math.sqrt(fan))
        for w in self.parameters():
            w.mul_(init_scale)

    def forward(self, x: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
        # e_a·W_in + e_b·W_in from one (p, h) table: the same sums as projecting each example's
        # embeddings, without a (B, d) gather per operand
        table = self.W_E @ self.W_in                                         # (p, h)
        pre = self.hook_pre(take_rows(table, x[:, 0]) + take_rows(table, x[:, 1]))
        out = self.hook_out(self.hook_post(self.act(pre)) @ self.W_out)      # (B, d)
        return self.hook_logits(out @ self.unembed)                          # (B, p)

    @property
    def unembed(self) -> torch.Tensor:
        """(d, p): ``W_Eᵀ`` when tied (PAIR), else ``W_U`` (the tickets paper)."""
        return self.W_E.T if self.tied else self.W_U
