"""PyTorch eager reference for `evolve bench train-throughput`.

The same PixArt-alpha DiT as plugins/dit/src/dit.rs (adaLN-single, self-attention, cross-attention
with LayerNorm on Q and K, GELU-tanh MLP, caption projection, small text encoder), the same
shapes, and the same training step (DDPM epsilon loss, backward, AdamW, EMA). Prints one line:
`torch img/s: <value>`.

    python3 bench/dit_torch.py --hidden 128 --depth 4 --heads 4 --patch 4 --image 32 --batch 64
"""

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class Attention(nn.Module):
    def __init__(self, dim, ctx_dim, heads, qk_norm):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(ctx_dim, dim)
        self.to_v = nn.Linear(ctx_dim, dim)
        self.to_out = nn.Linear(dim, dim)
        d = dim // heads
        self.norm_q = nn.LayerNorm(d, eps=1e-6) if qk_norm else None
        self.norm_k = nn.LayerNorm(d, eps=1e-6) if qk_norm else None

    def forward(self, x, ctx):
        b, n, c = x.shape
        h = self.heads
        q = self.to_q(x).view(b, n, h, c // h).transpose(1, 2)
        k = self.to_k(ctx).view(b, ctx.shape[1], h, c // h).transpose(1, 2)
        v = self.to_v(ctx).view(b, ctx.shape[1], h, c // h).transpose(1, 2)
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // h), dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, c))


class FF(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.a = nn.Linear(dim, dim * mult)
        self.b = nn.Linear(dim * mult, dim)

    def forward(self, x):
        return self.b(F.gelu(self.a(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.attn1 = Attention(h, h, heads, False)
        self.attn2 = Attention(h, h, heads, True)
        self.ff = FF(h)
        self.table = nn.Parameter(torch.randn(6, h) / h**0.5)

    def forward(self, x, y, t6):
        b = x.shape[0]
        m = (t6.view(b, 6, -1) + self.table[None]).chunk(6, dim=1)
        sh1, sc1, g1, sh2, sc2, g2 = m
        nx = modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), sh1, sc1)
        x = x + g1 * self.attn1(nx, nx)
        x = x + self.attn2(x, y)
        nx = modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), sh2, sc2)
        return x + g2 * self.ff(nx)


class TextEncoder(nn.Module):
    def __init__(self, vocab, length, dim, heads):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.01)
        self.n1, self.n2, self.nf = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, dim, heads, False)
        self.ff = FF(dim)

    def forward(self, ids):
        x = self.tok(ids) + self.pos[None]
        h = self.n1(x)
        x = x + self.attn(h, h)
        x = x + self.ff(self.n2(x))
        return self.nf(x)


class DiT(nn.Module):
    def __init__(self, image, patch, h, depth, heads, cap_ch, cap_len):
        super().__init__()
        self.patch, self.image, self.h = patch, image, h
        self.proj = nn.Linear(3 * patch * patch, h)
        g = image // patch
        self.register_buffer("pos", torch.randn(1, g * g, h) * 0.02)
        self.t1, self.t2 = nn.Linear(256, h), nn.Linear(h, h)
        self.t_block = nn.Linear(h, 6 * h)
        self.c1, self.c2 = nn.Linear(cap_ch, h), nn.Linear(h, h)
        self.null = nn.Parameter(torch.randn(cap_len, cap_ch) / cap_ch**0.5)
        self.blocks = nn.ModuleList([Block(h, heads) for _ in range(depth)])
        self.final_table = nn.Parameter(torch.randn(2, h) / h**0.5)
        self.out = nn.Linear(h, patch * patch * 3)

    def forward(self, x, t, cap, keep):
        b, p, g = x.shape[0], self.patch, self.image // self.patch
        tokens = x.view(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * p * p)
        x = self.proj(tokens) + self.pos
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
        args = t[:, None].float() * freqs[None]
        e_t = self.t2(F.silu(self.t1(torch.cat([args.cos(), args.sin()], -1))))
        t6 = self.t_block(F.silu(e_t))
        cap = torch.where(keep[:, None, None], cap, self.null[None])
        y = self.c2(F.gelu(self.c1(cap), approximate="tanh"))
        for blk in self.blocks:
            x = blk(x, y, t6)
        m = self.final_table[None] + e_t[:, None]
        x = modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), m[:, 0:1], m[:, 1:2])
        out = self.out(x)
        return out.view(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, g * p, g * p)


def main():
    ap = argparse.ArgumentParser()
    for name, default in [("hidden", 128), ("depth", 4), ("heads", 4), ("patch", 4), ("image", 32), ("batch", 64),
                          ("caption_channels", 64), ("caption_len", 16), ("steps", 20), ("warmup", 3)]:
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    a = ap.parse_args()
    torch.manual_seed(0)
    dit = DiT(a.image, a.patch, a.hidden, a.depth, a.heads, a.caption_channels, a.caption_len)
    text = TextEncoder(4096, a.caption_len, a.caption_channels, max(1, a.caption_channels // 32))
    params = list(dit.parameters()) + list(text.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    betas = torch.linspace(1e-4, 0.02, 1000)
    ab = torch.cumprod(1 - betas, 0)
    x0 = torch.rand(a.batch, 3, a.image, a.image) * 2 - 1
    ids = torch.randint(1, 4096, (a.batch, a.caption_len))

    def step():
        t = torch.randint(0, 1000, (a.batch,))
        noise = torch.randn_like(x0)
        keep = torch.rand(a.batch) > 0.1
        abt = ab[t].view(-1, 1, 1, 1)
        xt = abt.sqrt() * x0 + (1 - abt).sqrt() * noise
        loss = F.mse_loss(dit(xt, t, text(ids), keep), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(0.995).add_(p, alpha=0.005)

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    elapsed = time.perf_counter() - start
    print(f"params: {sum(p.numel() for p in params)}")
    print(f"torch img/s: {a.batch * a.steps / elapsed:.2f}")


if __name__ == "__main__":
    main()
