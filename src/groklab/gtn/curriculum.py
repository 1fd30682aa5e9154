"""What the generator is fed at inner step t: the four curriculum variants of Such et al. (2020,
arXiv 1912.07768, §3.2 and Fig. 1c).

* ``none``           fresh noise z ~ N(0, I) and random labels at every step (nothing learned);
* ``all_shuffled``   a learned pool of T·B noise vectors, randomly split into T batches per unroll;
* ``shuffled_batch`` T learned batches of B vectors, fed in a random order per unroll;
* ``full``           T learned batches fed in a fixed order: batch t at step t.

Labels of the learned variants are fixed and balanced (``arange(B) % C``). With
``learned_labels`` (the paper's optional learned labels, §3) the generator is still fed the
class one-hot, but the learner is trained on a learned soft target per slot, softmax of
logits initialised at ``label_scale`` · onehot(class). The random choices
of one unroll are drawn once into a ``plan`` by ``Curriculum.plan(generator)``, so recomputing a
step (the checkpointed unroll) feeds exactly the same inputs.
"""
from __future__ import annotations

import torch
from torch import nn

KINDS = ("none", "all_shuffled", "shuffled_batch", "full")


class Curriculum(nn.Module):
    """Learned generator inputs. ``inputs(t, plan)`` returns z (B, z_dim) and labels (B,)."""

    def __init__(self, kind: str, steps: int, batch: int, z_dim: int, n_classes: int, seed: int = 0,
                 learned_labels: bool = False, label_scale: float = 5.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"inner.curriculum={kind!r} is not one of: {', '.join(KINDS)}")
        self.kind, self.steps, self.batch, self.z_dim, self.n_classes = kind, steps, batch, z_dim, n_classes
        g = torch.Generator().manual_seed(seed)
        if kind == "all_shuffled":
            self.z = nn.Parameter(torch.randn(steps * batch, z_dim, generator=g))   # (T·B, z_dim)
            self.register_buffer("labels", torch.arange(steps * batch) % n_classes)
        elif kind in ("shuffled_batch", "full"):
            self.z = nn.Parameter(torch.randn(steps, batch, z_dim, generator=g))    # (T, B, z_dim)
            self.register_buffer("labels", torch.arange(batch) % n_classes)
        else:
            self.z = None
        if learned_labels:
            if kind == "none":
                raise ValueError("learned labels need a learned curriculum, not inner.curriculum='none'")
            onehot = torch.nn.functional.one_hot(self.labels, n_classes).float() * label_scale
            if kind != "all_shuffled":
                onehot = onehot.expand(steps, batch, n_classes)
            self.label_logits = nn.Parameter(onehot.clone())     # (T·B, C) or (T, B, C)
        else:
            self.label_logits = None

    def plan(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw this unroll's random choices (noise, labels or orders) from ``g``."""
        T, B = self.steps, self.batch
        if self.kind == "none":
            return {"z": torch.randn(T, B, self.z_dim, generator=g),
                    "y": torch.randint(0, self.n_classes, (T, B), generator=g)}
        if self.kind == "all_shuffled":
            return {"perm": torch.randperm(T * B, generator=g).view(T, B)}
        if self.kind == "shuffled_batch":
            return {"order": torch.randperm(T, generator=g)}
        return {}

    def inputs(self, t: int, plan: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's input at step t: z (B, z_dim) and class labels (B,)."""
        if self.kind == "none":
            return plan["z"][t], plan["y"][t]
        if self.kind == "all_shuffled":
            idx = plan["perm"][t]
            return self.z[idx], self.labels[idx]
        return self.z[self._slot(t, plan)], self.labels

    def target(self, t: int, plan: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """What the learner is trained on at step t: the class labels ``y`` (B,), or with learned
        labels the soft targets softmax(label_logits) (B, C) of the same slots."""
        if self.label_logits is None:
            return y
        i = plan["perm"][t] if self.kind == "all_shuffled" else self._slot(t, plan)
        return self.label_logits[i].softmax(-1)

    def _slot(self, t: int, plan: dict[str, torch.Tensor]) -> int:
        return int(plan["order"][t]) if self.kind == "shuffled_batch" else t

