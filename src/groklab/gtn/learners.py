"""Learners: small MLPs and CNNs that a GTN teaches, used as pure functions of their parameters.

A learner is an architecture (``LearnerSpec`` → an ``nn.Module`` that only describes the
computation) plus a parameter dict drawn fresh from a seed; the inner loop calls it through
``torch.func.functional_call`` so parameters can be non-leaf tensors carrying the meta-graph.

``norm="meanbn"`` is the mean-only BatchNorm of the released GTN code (subtract the batch mean,
add a learned bias); its running means are carried through the unroll as a cumulative average
of the inner steps' batch means and used when the learner meets real data.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from groklab.gtn.generator import WNConv, WNLinear


@dataclass(frozen=True)
class LearnerSpec:
    kind: str = "mlp"                    # mlp | cnn
    widths: tuple[int, ...] = (64, 128)  # hidden widths (mlp) or channels (cnn)
    weight_norm: bool = True
    norm: str = "none"                   # none | meanbn

    def describe(self) -> str:
        return f"{self.kind}[{'-'.join(map(str, self.widths))}]"

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}


class Learner(nn.Module):
    """MLP: flatten → (WN-Linear → [mean-BN] → ReLU)* → WN-Linear.
    CNN: (WN-Conv k3 stride 2 pad 1 → [mean-BN] → ReLU)* → flatten → WN-Linear; 2-D convs for
    images (C, H, W), 1-D for sequences (1, L). Input x (B, *shape) → logits (B, n_classes)."""

    def __init__(self, spec: LearnerSpec, shape: tuple[int, ...], n_classes: int):
        super().__init__()
        self.spec, self.shape = spec, tuple(shape)
        bias = spec.norm == "none"   # mean-BN brings its own bias
        layers: list[nn.Module] = []
        if spec.kind == "mlp":
            d = math.prod(shape)
            for w in spec.widths:
                layers.append(WNLinear(d, w, spec.weight_norm, bias))
                d = w
        else:
            dims = len(shape) - 1
            c, sides = shape[0], list(shape[1:])
            for w in spec.widths:
                layers.append(WNConv(c, w, 3, dims, spec.weight_norm, padding=1, stride=2))
                c, sides = w, [(s - 1) // 2 + 1 for s in sides]
            d = c * math.prod(sides)
        self.layers = nn.ModuleList(layers)
        self.bn_bias = nn.ParameterList(
            [nn.Parameter(torch.zeros(w)) for w in spec.widths] if spec.norm == "meanbn" else [])
        self.head = WNLinear(d, n_classes, spec.weight_norm)

    def forward(self, x: torch.Tensor, running: list[torch.Tensor] | None = None):
        """Returns (logits (B, C), batch means per layer (list of (width,)) or [] without BN).
        With ``running`` given, those means are subtracted instead of the batch's (eval mode)."""
        h = x.flatten(1) if self.spec.kind == "mlp" else x
        means = []
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if self.spec.norm == "meanbn":
                red = [0] + list(range(2, h.dim()))            # batch and spatial axes
                m = h.mean(red)
                means.append(m)
                use = running[i] if running is not None else m
                bshape = [1, -1] + [1] * (h.dim() - 2)
                h = h - use.view(bshape) + self.bn_bias[i].view(bshape)
            h = F.relu(h)
        return self.head(h.flatten(1)), means


def init_params(module: Learner, g: torch.Generator, dtype: torch.dtype = torch.float32
                ) -> dict[str, torch.Tensor]:
    """A fresh parameter dict: Kaiming-normal directions v, g = ‖v‖ per unit, zero biases."""
    params = {}
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "v":
            fan_in = p[0].numel()
            params[name] = torch.randn(p.shape, generator=g, dtype=dtype) * math.sqrt(2 / fan_in)
        else:
            params[name] = torch.zeros(p.shape, dtype=dtype)
    for name in params:
        if name.endswith(".g"):
            v = params[name[:-2] + ".v"]
            params[name] = v.flatten(1).norm(dim=1)
    return params


# The architecture space of `learner.kind=random` and of `groklab gtn nas`.
SPACE = {"kinds": ("mlp", "cnn"), "depths": (1, 2, 3), "mlp_widths": (32, 64, 128, 256),
         "cnn_channels": (8, 16, 32, 64)}


def sample_spec(rng: random.Random, kinds=("mlp", "cnn"), weight_norm: bool = True,
                norm: str = "none") -> LearnerSpec:
    """Draw an architecture: kind, depth 1–3, and a width per layer from ``SPACE``."""
    kind = rng.choice(list(kinds))
    depth = rng.choice(SPACE["depths"])
    choices = SPACE["mlp_widths"] if kind == "mlp" else SPACE["cnn_channels"]
    return LearnerSpec(kind, tuple(rng.choice(choices) for _ in range(depth)), weight_norm, norm)


def spec_for_step(cfg, step: int, seed: int, k: int = 0) -> LearnerSpec:
    """The learner ``k`` of one outer step's meta-batch under a ``LearnerConfig``: fixed,
    width-scaled or sampled."""
    rng = random.Random(seed * 1_000_003 + step if k == 0 else f"{seed}:{step}:{k}")
    if cfg.kind == "random":
        return sample_spec(rng, weight_norm=cfg.weight_norm, norm=cfg.norm)
    widths = tuple(cfg.hidden if cfg.kind == "mlp" else cfg.channels)
    if cfg.random_width:
        widths = tuple(max(1, round(w * 2 ** rng.uniform(-1, 1))) for w in widths)
    return LearnerSpec(cfg.kind, widths, cfg.weight_norm, cfg.norm)

