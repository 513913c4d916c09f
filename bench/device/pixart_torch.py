"""PyTorch reference for `evolve bench train-throughput --case pixart-xl-*` on a GPU.

PixArt-alpha's transformer (adaLN-single, self-attention, cross-attention with LayerNorm on Q and
K, GELU-tanh MLP, caption projection of T5-XXL features, learned variance) at the shapes of
core/src/bench/transformer_step.rs: VAE latents (4 channels, image / 8), 120 caption tokens of
4096 features. One training step is forward, MSE loss, backward, clipping, AdamW and an EMA, as
evolve's. Attention through `scaled_dot_product_attention` (flash where it applies), compute in
bf16 autocast over f32 weights; `--mode compile` adds `torch.compile`. Prints img/s, TFLOP/s
(the same matrix-product count as evolve's) and MFU against a bf16 matmul measured here first.

    python3 bench/device/pixart_torch.py --case pixart-xl-512 --mode eager
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CASES = {"pixart-xl-256": (32, 64), "pixart-xl-512": (64, 16)}  # latent side, batch
HIDDEN, DEPTH, HEADS, PATCH, CAPTION_CHANNELS, CAPTION_LEN = 1152, 28, 16, 2, 4096, 120


def flops_per_image(latent):
    n = (latent // PATCH) ** 2
    c, l = HIDDEN, CAPTION_LEN
    block = 2 * (4 * n * c * c + 2 * n * n * c) + 2 * (2 * n * c * c + 2 * l * c * c + 2 * n * l * c) + 2 * (8 * n * c * c)
    caption = 2 * l * (CAPTION_CHANNELS * c + c * c)
    return 3 * (DEPTH * block + caption)


class Attention(nn.Module):
    def __init__(self, dim, ctx_dim, heads, qk_norm):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k = nn.Linear(dim, dim), nn.Linear(ctx_dim, dim)
        self.to_v, self.to_out = nn.Linear(ctx_dim, dim), nn.Linear(dim, dim)
        d = dim // heads
        self.norm_q = nn.LayerNorm(d, eps=1e-6) if qk_norm else None
        self.norm_k = nn.LayerNorm(d, eps=1e-6) if qk_norm else None

    def forward(self, x, ctx):
        b, n, c = x.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)
        q, k, v = split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx))
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.attn1 = Attention(h, h, heads, False)
        self.attn2 = Attention(h, h, heads, True)
        self.ff = nn.Sequential(nn.Linear(h, 4 * h), nn.GELU(approximate="tanh"), nn.Linear(4 * h, h))
        self.table = nn.Parameter(torch.randn(6, h) / h**0.5)

    def forward(self, x, y, t6):
        m = (t6 + self.table[None]).chunk(6, dim=1)
        norm = lambda t: F.layer_norm(t, t.shape[-1:], eps=1e-6)
        x = x + m[2] * self.attn1(norm(x) * (1 + m[1]) + m[0], norm(x) * (1 + m[1]) + m[0])
        x = x + self.attn2(x, y)
        return x + m[5] * self.ff(norm(x) * (1 + m[4]) + m[3])


class PixArt(nn.Module):
    def __init__(self):
        super().__init__()
        h = HIDDEN
        self.patch = nn.Conv2d(4, h, PATCH, PATCH)
        self.time = nn.Sequential(nn.Linear(256, h), nn.SiLU(), nn.Linear(h, h))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h))
        self.caption = nn.Sequential(nn.Linear(CAPTION_CHANNELS, h), nn.GELU(approximate="tanh"), nn.Linear(h, h))
        self.blocks = nn.ModuleList(Block(h, HEADS) for _ in range(DEPTH))
        self.final_table = nn.Parameter(torch.randn(2, h) / h**0.5)
        self.out = nn.Linear(h, PATCH * PATCH * 8)

    def forward(self, x, t, caption):
        b, _, side, _ = x.shape
        g = side // PATCH
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        half = 128
        freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(half, device=x.device) / half)
        args = t[:, None].float() * freqs[None]
        e_t = self.time(torch.cat([torch.cos(args), torch.sin(args)], dim=1))
        t6 = self.t_block(e_t).view(b, 6, -1)
        y = self.caption(caption)
        for blk in self.blocks:
            tokens = blk(tokens, y, t6)
        m = self.final_table[None] + e_t[:, None]
        tokens = F.layer_norm(tokens, tokens.shape[-1:], eps=1e-6) * (1 + m[:, 1:2]) + m[:, 0:1]
        out = self.out(tokens).view(b, g, g, PATCH, PATCH, 8).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, 8, side, side)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, side=8192, repeats=10):
    a = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    b = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * side**3 / ((time.perf_counter() - started) / repeats) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=sorted(CASES), default="pixart-xl-512")
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="a tiny model on the CPU: checks the script runs")
    a = ap.parse_args()
    latent, batch = CASES[a.case]
    device = "cuda"
    if a.smoke:
        global HIDDEN, DEPTH, HEADS, CAPTION_CHANNELS, CAPTION_LEN
        HIDDEN, DEPTH, HEADS, CAPTION_CHANNELS, CAPTION_LEN = 64, 2, 4, 32, 8
        latent, batch, device, a.steps = 8, 2, "cpu", 1
    torch.manual_seed(0)
    peak = matmul_peak(device, side=256 if a.smoke else 8192)
    model = PixArt().to(device)
    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=device == "cuda")
    forward = torch.compile(model) if a.mode == "compile" else model
    x = torch.randn(batch, 4, latent, latent, device=device)
    caption = torch.randn(batch, CAPTION_LEN, CAPTION_CHANNELS, device=device)
    t = torch.arange(batch, device=device) * 397 % 1000

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            out = forward(x, t, caption)
        loss = F.mse_loss(out[:, :4].float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 0.001)

    for _ in range(3):
        step()
    sync(device)
    started = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync(device)
    rate = batch * a.steps / (time.perf_counter() - started)
    tflops = rate * flops_per_image(latent) / 1e12
    label = "smoke" if a.smoke else a.case
    print(f"torch-{a.mode} {label}: {rate:.2f} img/s, {tflops:.1f} TFLOP/s, MFU {100 * tflops / peak:.1f}% "
          f"(bf16 matmul {peak:.1f} TFLOP/s; {sum(p.numel() for p in params) / 1e6:.0f}M parameters)")


if __name__ == "__main__":
    main()
