"""Named hook points on activations (the idea of TransformerLens's ``HookPoint``, in 50 lines).

Every activation an analysis reads passes through an identity ``HookPoint``; its name is its
module path (``blocks.0.mlp.hook_post``). ``run_with_cache`` returns the logits and a dict of
every hooked activation.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


class HookPoint(nn.Module):
    """Identity module that analyses attach to; ``name`` is set by ``HookedModule``."""

    def __init__(self):
        super().__init__()
        self.name = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class HookedModule(nn.Module):
    """Base class: names every HookPoint after construction and offers ``run_with_cache``."""

    def setup_hooks(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, HookPoint):
                m.name = name

    def hook_points(self) -> dict[str, HookPoint]:
        return {n: m for n, m in self.named_modules() if isinstance(m, HookPoint)}

    @contextmanager
    def hooks(self, fns: dict[str, Callable]) -> Iterator[None]:
        """Attach forward hooks ``fn(activation, hook) -> activation | None`` by name."""
        points = self.hook_points()
        unknown = set(fns) - set(points)
        if unknown:
            raise KeyError(f"unknown hook point(s) {sorted(unknown)}; valid: {sorted(points)}")
        handles = [points[n].register_forward_hook(lambda m, i, o, f=f: f(o, m))
                   for n, f in fns.items()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def run_with_cache(self, *args, names: list[str] | None = None, **kwargs):
        """Run forward and return ``(output, cache)`` with every (or the named) activation."""
        cache: dict[str, torch.Tensor] = {}

        def store(x, hook):
            cache[hook.name] = x.detach()

        names = names if names is not None else list(self.hook_points())
        with self.hooks({n: store for n in names}):
            out = self(*args, **kwargs)
        return out, cache
