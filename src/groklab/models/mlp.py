"""MLPs of the grokking papers.

* Prieto et al. 2025 (arXiv 2501.04697): one-hot x and y concatenated, 226-200-200-113, ReLU,
  no biases. The first layer on a one-hot input is computed exactly as a gather of two rows of
  W_in (no 226-wide matmul).
* Liu et al. 2022 (Omnigrok, arXiv 2210.01117): 784-200-200-10 on MNIST, all weights ×8 at init.
* ``embed="learned"``: tokens go through a learned embedding W_E (p, d) and the two embeddings
  are concatenated (the toy models of Liu et al. 2022, arXiv 2205.10343).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from groklab.models.fused import can_fuse, pair_rows
from groklab.models.hooks import HookedModule, HookPoint
from groklab.models.ops import take_rows


class MLPNet(HookedModule):
    """Input: tokens (B, 3) ``[x, y, =]`` (token tasks; ``=`` ignored) or vectors (B, d_in).
    Output: logits (B, n_out)."""

    def __init__(self, n_out: int, hidden: list[int], d_in: int = 0, n_tokens: int = 0,
                 embed: str = "onehot", d_embed: int = 128, act: str = "relu", bias: bool = False,
                 dropout: float = 0.0, init_scale: float = 1.0, seed: int = 0):
        super().__init__()
        self.n_tokens, self.embed = n_tokens, embed
        self.register_buffer("offsets", torch.tensor([0, n_tokens]), persistent=False)
        if n_tokens:  # token task: two operands
            if embed == "learned":
                self.W_E = nn.Parameter(torch.empty(n_tokens, d_embed))
                d_in = 2 * d_embed
            else:
                d_in = 2 * n_tokens
        widths = [d_in, *hidden, n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(widths[:-1], widths[1:]))
        self.hooks_pre = nn.ModuleList(HookPoint() for _ in hidden)   # hooks_pre.{i}: (B, width)
        self.hooks_post = nn.ModuleList(HookPoint() for _ in hidden)
        self.act = {"relu": F.relu, "gelu": F.gelu}[act]
        self.drop = nn.Dropout(dropout)
        self.hook_embed = HookPoint()   # (B, d_in) learned embeddings (learned only)
        self.hook_logits = HookPoint()  # (B, n_out)
        self.reset_parameters(init_scale, seed)
        self.setup_hooks()

    @torch.no_grad()
    def reset_parameters(self, init_scale: float, seed: int) -> None:
        """PyTorch's Linear defaults (U(±1/sqrt(fan_in))), embeddings N(0, 1); then × init_scale."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name == "W_E":
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[1] if p.dim() == 2 else self.layers[int(name.split(".")[1])].in_features
                b = 1 / math.sqrt(fan_in)
                p.copy_(torch.rand(p.shape, generator=g) * 2 * b - b)
            p.mul_(init_scale)

    def first_layer(self, x: torch.Tensor) -> torch.Tensor:
        lin = self.layers[0]
        if self.n_tokens and self.embed == "onehot":
            # onehot(a) ++ onehot(b) @ W^T == W[:, a] + W[:, p + b]: exact, no wide matmul.
            # Rows of a contiguous copy of W^T (gathering the strided W^T was 2x slower), added:
            # on CPU in one compiled pass, bit for bit two gathers and an add (models.fused)
            Wt = lin.weight.T.contiguous()
            a, b = x[:, 0], x[:, 1] + self.n_tokens
            if can_fuse(Wt):
                h = pair_rows(Wt, a, b)
            else:
                h = take_rows(Wt, a) + take_rows(Wt, b)
            return h + lin.bias if lin.bias is not None else h
        if self.n_tokens:
            x = self.hook_embed(take_rows(self.W_E, x[:, :2]).flatten(1))
        return lin(x)

    def forward(self, x: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
        h = self.first_layer(x)
        for i in range(len(self.hooks_pre)):
            if i > 0:
                h = self.layers[i](h)
            h = self.hooks_pre[i](h)
            # ReLU in place where nothing else holds the pre-activation (no hook on it): the same
            # bits, one buffer fewer per layer
            in_place = self.act is F.relu and not self.hooks_pre[i]._forward_hooks
            h = self.hooks_post[i](F.relu_(h) if in_place else self.act(h))
            h = self.drop(h)
        return self.hook_logits(self.layers[-1](h))
