"""Research-only variants of the split student's top layer, on the same stored layer-5 states.

``arch="separate"``: the top layer keeps query and passage apart, as the bi-encoder does (the
student *is* all-MiniLM-L6-v2 as a bi-encoder; training fine-tunes its last layer).
``arch="gated"``: the top layer is joint, but attention from one segment to the other gets a
learned bias ``b_h`` per head (``gate_init``: very negative starts as the bi-encoder, 0 as the
plain split student), so training can open the cross-segment attention as far as it helps.
"""

from __future__ import annotations

import torch

from rank_distillm.passage_states import PassageStates


class GatedPassageStates(PassageStates):
    def __init__(self, backbone, store=None, arch: str = "gated", gate_init: float = -10.0, batch_size: int = 64):
        super().__init__(backbone, store, batch_size)
        if arch not in ("gated", "separate"):
            raise ValueError(f"arch: {arch!r}")
        heads = backbone.model.config.num_attention_heads
        self.arch = arch
        self.gate = torch.nn.Parameter(torch.full((heads,), float(gate_init)), requires_grad=arch == "gated")

    def upper_attention_mask(self, hidden, features):
        mask = features["attention_mask"].bool()
        passage = features["token_type_ids"].bool() & mask
        same = passage.unsqueeze(2) == passage.unsqueeze(1)  # [B, S, S]
        low = torch.finfo(hidden.dtype).min
        if self.arch == "separate":
            bias = torch.zeros(same.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(~same, low).unsqueeze(1)
        else:
            bias = torch.where(same.unsqueeze(1), torch.zeros((), dtype=hidden.dtype, device=hidden.device),
                               self.gate.to(hidden.dtype).view(1, -1, 1, 1))
        keys = mask.unsqueeze(1).unsqueeze(1)  # [B, 1, 1, S]: padding is never attended to
        # padding rows see their own segment (no empty softmax); they are masked out by the head
        return bias.masked_fill(~keys, low)

    @classmethod
    def model(cls, student, store, arch: str, gate_init: float):
        from sentence_transformers.cross_encoder import CrossEncoder

        states = cls(student[0], store, arch=arch, gate_init=gate_init)
        return CrossEncoder(modules=[states, *[student[i] for i in range(1, len(student))]],
                            activation_fn=student.activation_fn, device=str(student.device))
