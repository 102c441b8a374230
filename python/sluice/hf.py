"""Hugging Face transformers' packed ("flattened") batch format.

transformers' DataCollatorWithFlattening concatenates a micro-batch's
sequences into one row and describes them for flash-attention's varlen path
with `position_ids` (restarting at 0 for every sequence) and, when asked
(return_flash_attn_kwargs=True), `cu_seq_lens_q` / `cu_seq_lens_k` (int32
cumulative lengths from 0) and `max_length_q` / `max_length_k` (the longest
sequence). Pure Python: lists and ints, or torch tensors with as_tensors.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from .plan import cumulative


def flattening_batch(lengths: Sequence[int], as_tensors: bool = False, device=None) -> Dict[str, Any]:
    """The flash-attention keyword arguments and position ids of one packed
    row of sequences of `lengths` (in packing order). With as_tensors,
    cu_seq_lens_* are 1-D int32 tensors and position_ids a [1, total] int64
    tensor (the collator's dtypes)."""
    lens = [int(s) for s in lengths]
    if not lens:
        raise ValueError("flattening_batch: no sequences")
    for i, s in enumerate(lens):
        if s < 1:
            raise ValueError("flattening_batch: lengths[%d] = %d must be >= 1" % (i, s))
    cu = cumulative(lens)
    pos: List[int] = [p for s in lens for p in range(s)]
    out: Dict[str, Any] = {
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": list(cu),
        "max_length_q": max(lens),
        "max_length_k": max(lens),
        "position_ids": [pos],
    }
    if as_tensors:
        import torch

        out["cu_seq_lens_q"] = torch.tensor(cu, dtype=torch.int32, device=device)
        out["cu_seq_lens_k"] = torch.tensor(cu, dtype=torch.int32, device=device)
        out["position_ids"] = torch.tensor([pos], dtype=torch.int64, device=device)
    return out
