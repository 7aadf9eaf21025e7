"""Training with the Triton kernels follows the same loss curve as training with the torch references.

Two tiny models are trained from the same seed on the same data with ``backend="torch"`` and ``backend="triton"``:
an iterative slot-attention grouper (GRU slot updates, a decoder reading the attention maps) and the C-JEPA
predictor. Per-step parity of one call is covered by tests/kernels; this guards what parity of single calls
cannot: that errors do not compound over iterations and optimiser steps. On CPU the kernels run under the Triton
interpreter, so the runs are short; on a GPU they are longer.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cjepa.backends.slot_update import slot_attention
from cjepa.losses import predictor_losses
from cjepa.models.predictor import MaskedSlotPredictor
from tests.helpers import assert_close_verbose
from tests.kernels.common import DEVICE, ON_GPU, requires_triton_runtime

# The interpreter costs ~0.2 ms per Triton op per program, so CPU runs are short (a few seconds each).
SLOT_STEPS = 200 if ON_GPU else 10
PREDICTOR_STEPS = 200 if ON_GPU else 8


class TinySlotAttention(nn.Module):
    """Slot attention (Locatello et al.) at toy size: k/v from normalised inputs, ``iters`` rounds of
    q from the slots -> slot_attention -> GRU + residual MLP; the reconstruction mixes per-slot decodings with
    the last attention map, so the attention output's gradient path is trained too."""

    def __init__(self, dim_in: int, dim: int, iters: int, backend: str):
        super().__init__()
        self.iters, self.backend = iters, backend
        self.norm_in = nn.LayerNorm(dim_in)
        self.to_k = nn.Linear(dim_in, dim, bias=False)
        self.to_v = nn.Linear(dim_in, dim, bias=False)
        self.norm_slots = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.slots_mu = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.slots_log_sigma = nn.Parameter(torch.full((1, 1, dim), -1.0))
        self.decode = nn.Linear(dim, dim_in)

    def forward(self, x: torch.Tensor, noise: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
        B, K, D = noise.shape
        inputs = self.norm_in(x)  # (B, N, Din)
        k, v = self.to_k(inputs), self.to_v(inputs)  # (B, N, D)
        slots = self.slots_mu + self.slots_log_sigma.exp() * noise  # (B, K, D)
        for _ in range(self.iters):
            q = self.to_q(self.norm_slots(slots))
            updates, attn = slot_attention(q, k, v, backend=self.backend, input_mask=input_mask)
            slots = self.gru(updates.reshape(B * K, D), slots.reshape(B * K, D)).view(B, K, D)
            slots = slots + self.mlp(slots)
        return torch.einsum("bkn,bkd->bnd", attn, self.decode(slots))  # (B, N, Din)


def _clustered_inputs(gen: torch.Generator, B: int, N: int, dim_in: int, clusters: int):
    """Inputs drawn around `clusters` random centres per sample (something slots can separate), with padding."""
    centres = torch.randn(B, clusters, dim_in, generator=gen) * 2
    assign = torch.randint(0, clusters, (B, N), generator=gen)
    x = torch.gather(centres, 1,
                     assign[..., None].expand(B, N, dim_in)) + 0.1 * torch.randn(B, N, dim_in, generator=gen)
    mask = torch.rand(B, N, generator=gen) < 0.9
    return x, mask


def _train_slot_model(backend: str, steps: int) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Loss per step, and every parameter's gradient at step 0."""
    torch.manual_seed(0)
    B, N, K, dim_in, dim, iters = (16, 64, 5, 8, 32, 3) if ON_GPU else (2, 12, 3, 4, 16, 2)
    model = TinySlotAttention(dim_in, dim, iters=iters, backend=backend).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3 if ON_GPU else 1e-2)
    data_gen = torch.Generator().manual_seed(1)
    batches = [_clustered_inputs(data_gen, B, N, dim_in, K) for _ in range(4)]
    noise_gen = torch.Generator().manual_seed(2)
    losses = []
    for step in range(steps):
        x, mask = (t.to(DEVICE) for t in batches[step % len(batches)])
        noise = torch.randn(B, K, dim, generator=noise_gen).to(DEVICE)
        recon = model(x, noise, mask)
        loss = ((recon - x).pow(2).mean(-1) * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            first_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        opt.step()
        losses.append(loss.item())
    return losses, first_grads


def _assert_curves_match(ref: list[float], got: list[float], rtol: float, what: str) -> None:
    for step, (a, b) in enumerate(zip(ref, got)):
        assert abs(a - b) <= rtol * abs(a) + 1e-6, (
            f"{what}: loss diverged at step {step}: torch {a:.6f} vs triton {b:.6f}\n torch  {ref}\n triton {got}"
        )


@pytest.mark.interp
@requires_triton_runtime
def test_slot_attention_training_matches_torch():
    """A slot-attention model trained with the Triton kernel has the reference's parameter gradients through all
    iterations at step 0 and follows its loss curve step by step; the loss falls, so the comparison is about
    learning, not a constant. (Parameters are not compared after many steps: Adam turns rounding noise in
    near-zero gradients into full +-lr steps, which says nothing about the kernel.)"""
    ref_losses, ref_grads = _train_slot_model("torch", SLOT_STEPS)
    tri_losses, tri_grads = _train_slot_model("triton", SLOT_STEPS)
    for name, g_ref in ref_grads.items():
        assert_close_verbose(tri_grads[name], g_ref, atol=1e-5, rtol=1e-4, name=f"step-0 grad of {name}")
    assert min(ref_losses[-3:]) < 0.8 * ref_losses[0], f"the toy model did not learn: {ref_losses}"
    _assert_curves_match(ref_losses, tri_losses, rtol=1e-3, what="slot attention")


def _train_predictor(backend: str, steps: int) -> list[float]:
    torch.manual_seed(0)
    S, D, T_h, T_p, B = (7, 64, 6, 10, 16) if ON_GPU else (4, 16, 3, 2, 2)
    model = MaskedSlotPredictor(num_slots=S, slot_dim=D, history_frames=T_h, pred_frames=T_p, depth=2, heads=2,
                                mlp_dim=2 * D, dropout=0.0, attention_backend=backend).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(3)
    # Slots that drift linearly in time: a predictable sequence the predictor can learn.
    start, velocity = torch.randn(4, B, 1, S, D, generator=gen), 0.3 * torch.randn(4, B, 1, S, D, generator=gen)
    time = torch.arange(T_h + T_p, dtype=torch.float32)[None, :, None, None]
    losses = []
    for step in range(steps):
        target = (start[step % 4] + velocity[step % 4] * time).to(DEVICE)  # (B, T, S, D)
        masked = (torch.rand(B, S, generator=gen) < 0.4).to(DEVICE)
        pred = model(target[:, :T_h], masked)
        loss = predictor_losses(pred, target, masked, history_frames=T_h, include_t0=False)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.interp
@requires_triton_runtime
def test_predictor_training_matches_torch():
    """The C-JEPA predictor trained with kernels.attention=triton follows the torch-attention loss curve."""
    ref = _train_predictor("torch", PREDICTOR_STEPS)
    got = _train_predictor("triton", PREDICTOR_STEPS)
    assert ref[-1] < ref[0], f"the predictor did not learn: {ref}"
    _assert_curves_match(ref, got, rtol=1e-3, what="predictor")
