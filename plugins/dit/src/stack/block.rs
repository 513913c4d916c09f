//! One PixArt-alpha block over raw f32 buffers: the forward pass keeps what the backward pass
//! needs, the backward pass returns every parameter's gradient.
//!
//! ```text
//! (shift1, scale1, gate1, shift2, scale2, gate2) = t6 + scale_shift_table      (adaLN-single)
//! x1 = x  + gate1 * SelfAttn(LN(x) * (1 + scale1) + shift1)
//! x2 = x1 + CrossAttn(x1, y)                  (LayerNorm on each head's queries and keys)
//! x3 = x2 + gate2 * FF(LN(x2) * (1 + scale2) + shift2)
//! ```

use super::attention::{self, AttnShape, Heads, HeadsMut};
use super::kernels::{
    InputGrad, Modulation, add_into, gated_residual, gated_residual_backward, gelu, gelu_backward, layer_norm_affine,
    layer_norm_affine_backward, linear, linear_backward, ln_modulate, ln_modulate_backward,
};
use super::pool::Buf;

macro_rules! block_params {
    ($($field:ident: $name:literal),* $(,)?) => {
        /// One value per parameter of a block (its data, its gradient, its tensor).
        #[derive(Debug, Clone, Default)]
        pub struct BlockParams<T> {
            $(#[doc = concat!("`", $name, "`")] pub $field: T,)*
        }

        impl<T> BlockParams<T> {
            /// Builds each entry from the parameter's name under `transformer_blocks.{i}.`.
            pub fn try_from_fn<E>(mut f: impl FnMut(&'static str) -> Result<T, E>) -> Result<Self, E> {
                Ok(BlockParams { $($field: f($name)?,)* })
            }

            /// Maps each entry, stopping at the first error.
            pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<BlockParams<U>, E> {
                Ok(BlockParams { $($field: f(&self.$field)?,)* })
            }

            /// Maps each entry.
            pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> BlockParams<U> {
                BlockParams { $($field: f(&self.$field),)* }
            }

            /// `(name, entry)` pairs.
            pub fn into_named(self) -> Vec<(&'static str, T)> {
                vec![$(($name, self.$field)),*]
            }
        }
    };
}

block_params! {
    q1w: "attn1.to_q.weight", q1b: "attn1.to_q.bias",
    k1w: "attn1.to_k.weight", k1b: "attn1.to_k.bias",
    v1w: "attn1.to_v.weight", v1b: "attn1.to_v.bias",
    o1w: "attn1.to_out.0.weight", o1b: "attn1.to_out.0.bias",
    q2w: "attn2.to_q.weight", q2b: "attn2.to_q.bias",
    k2w: "attn2.to_k.weight", k2b: "attn2.to_k.bias",
    v2w: "attn2.to_v.weight", v2b: "attn2.to_v.bias",
    o2w: "attn2.to_out.0.weight", o2b: "attn2.to_out.0.bias",
    nqw: "attn2.norm_q.weight", nqb: "attn2.norm_q.bias",
    nkw: "attn2.norm_k.weight", nkb: "attn2.norm_k.bias",
    f1w: "ff.net.0.proj.weight", f1b: "ff.net.0.proj.bias",
    f2w: "ff.net.2.weight", f2b: "ff.net.2.bias",
    table: "scale_shift_table",
}

/// The sizes a block runs at.
#[derive(Debug, Clone, Copy)]
pub struct BlockDims {
    /// Samples.
    pub batch: usize,
    /// Image tokens per sample.
    pub tokens: usize,
    /// Caption tokens per sample.
    pub caption_len: usize,
    /// Width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ff_width: usize,
}

impl BlockDims {
    fn attn(&self, keys: usize) -> AttnShape {
        AttnShape {
            batch: self.batch,
            queries: self.tokens,
            keys,
            heads: self.heads,
            head_dim: self.width / self.heads,
        }
    }
}

/// What the backward pass needs of one block's forward pass.
pub struct Saved {
    mods: [Buf; 6],
    xhat1: Buf,
    rstd1: Buf,
    n1: Buf,
    qkv_w: Buf,
    qkv1: Buf,
    p1: Buf,
    a1: Buf,
    o1: Buf,
    x1: Buf,
    q2xhat: Buf,
    q2rstd: Buf,
    q2n: Buf,
    k2xhat: Buf,
    k2rstd: Buf,
    k2n: Buf,
    v2: Buf,
    p2: Buf,
    a2: Buf,
    xhat2: Buf,
    rstd2: Buf,
    n2: Buf,
    h: Buf,
    g: Buf,
    f: Buf,
}

fn scratch(n: usize) -> Buf {
    Buf::scratch(n)
}

fn lin(x: &[f32], w: &[f32], b: &[f32], rows: usize, inputs: usize) -> Buf {
    let mut y = scratch(rows * b.len());
    linear(x, w, b, rows, inputs, &mut y);
    y
}

/// The parts laid end to end.
fn concat(parts: &[&[f32]]) -> Buf {
    let mut out = scratch(parts.iter().map(|p| p.len()).sum());
    let mut at = 0;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    out
}

/// The six modulation rows per sample, `t6 (B, 6C) + table (6, C)`, as six `(B, C)` buffers.
fn modulations(t6: &[f32], table: &[f32], batch: usize, c: usize) -> [Buf; 6] {
    std::array::from_fn(|j| {
        let mut m = scratch(batch * c);
        for b in 0..batch {
            let src = &t6[b * 6 * c + j * c..b * 6 * c + (j + 1) * c];
            m[b * c..(b + 1) * c].iter_mut().zip(src).zip(&table[j * c..(j + 1) * c]).for_each(|((o, t), s)| {
                *o = t + s;
            });
        }
        m
    })
}

/// Per-head LayerNorm with a shared affine map over `x`'s rows of `head_dim`.
fn head_norm(x: &[f32], w: &[f32], b: &[f32]) -> (Buf, Buf, Buf) {
    let (mut out, mut xhat, mut rstd) = (scratch(x.len()), scratch(x.len()), scratch(x.len() / w.len()));
    layer_norm_affine(x, w, b, &mut out, &mut xhat, &mut rstd);
    (out, xhat, rstd)
}

/// Runs the block on `x` (B*N, C) with `t6` (B, 6C) and the projected caption `y` (B*L, C).
pub fn forward(p: &BlockParams<Vec<f32>>, d: BlockDims, x: &[f32], t6: &[f32], y: &[f32]) -> (Buf, Saved) {
    let (c, n) = (d.width, d.tokens);
    let (rows, caption_rows) = (d.batch * n, d.batch * d.caption_len);
    let mods = modulations(t6, &p.table, d.batch, c);

    let (mut n1, mut xhat1, mut rstd1) = (scratch(rows * c), scratch(rows * c), scratch(rows));
    ln_modulate(x, Modulation { shift: &mods[0], scale: &mods[1] }, n, c, &mut n1, &mut xhat1, &mut rstd1);
    // Q, K and V in one product: one (rows, 3C) GEMM runs faster than three (rows, C) ones.
    let (qkv_w, qkv_b) = (concat(&[&p.q1w, &p.k1w, &p.v1w]), concat(&[&p.q1b, &p.k1b, &p.v1b]));
    let qkv1 = lin(&n1, &qkv_w, &qkv_b, rows, c);
    let self_attn = d.attn(n);
    let (mut p1, mut a1) = (scratch(self_attn.probs_len()), scratch(rows * c));
    let [q1, k1, v1] = std::array::from_fn(|i| Heads::part(&qkv1, c, 3, i));
    attention::forward(self_attn, q1, k1, v1, &mut p1, HeadsMut::dense(&mut a1, c));
    let o1 = lin(&a1, &p.o1w, &p.o1b, rows, c);
    let mut x1 = scratch(rows * c);
    gated_residual(x, &o1, &mods[2], n, c, &mut x1);

    let (q2n, q2xhat, q2rstd) = head_norm(&lin(&x1, &p.q2w, &p.q2b, rows, c), &p.nqw, &p.nqb);
    let (k2n, k2xhat, k2rstd) = head_norm(&lin(y, &p.k2w, &p.k2b, caption_rows, c), &p.nkw, &p.nkb);
    let v2 = lin(y, &p.v2w, &p.v2b, caption_rows, c);
    let cross_attn = d.attn(d.caption_len);
    let (mut p2, mut a2) = (scratch(cross_attn.probs_len()), scratch(rows * c));
    let (q2, k2, v2h) = (Heads::dense(&q2n, c), Heads::dense(&k2n, c), Heads::dense(&v2, c));
    attention::forward(cross_attn, q2, k2, v2h, &mut p2, HeadsMut::dense(&mut a2, c));
    let mut x2 = lin(&a2, &p.o2w, &p.o2b, rows, c);
    add_into(&mut x2, &x1);

    let (mut n2, mut xhat2, mut rstd2) = (scratch(rows * c), scratch(rows * c), scratch(rows));
    ln_modulate(&x2, Modulation { shift: &mods[3], scale: &mods[4] }, n, c, &mut n2, &mut xhat2, &mut rstd2);
    let h = lin(&n2, &p.f1w, &p.f1b, rows, c);
    let mut g = scratch(h.len());
    gelu(&h, &mut g);
    let f = lin(&g, &p.f2w, &p.f2b, rows, d.ff_width);
    let mut x3 = scratch(rows * c);
    gated_residual(&x2, &f, &mods[5], n, c, &mut x3);

    let saved = Saved {
        mods,
        xhat1,
        rstd1,
        n1,
        qkv_w,
        qkv1,
        p1,
        a1,
        o1,
        x1,
        q2xhat,
        q2rstd,
        q2n,
        k2xhat,
        k2rstd,
        k2n,
        v2,
        p2,
        a2,
        xhat2,
        rstd2,
        n2,
        h,
        g,
        f,
    };
    (x3, saved)
}

/// Gradients of [`forward`]: returns `dx` and the parameters' gradients, and adds the caption's
/// and the modulations' gradients into `dy` (B*L, C) and `dt6` (B, 6C).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    p: &BlockParams<Vec<f32>>,
    d: BlockDims,
    s: &Saved,
    y: &[f32],
    dx3: &[f32],
    dy: &mut [f32],
    dt6: &mut [f32],
) -> (Buf, BlockParams<Buf>) {
    let (c, n) = (d.width, d.tokens);
    let (rows, caption_rows) = (d.batch * n, d.batch * d.caption_len);
    let mut gr = p.map(|v| scratch(v.len()));
    gr.table.fill(0.0);
    let mut dmods: [Buf; 6] = std::array::from_fn(|_| scratch(d.batch * c));

    // x3 = x2 + gate2 * FF(n2)
    let mut df = scratch(rows * c);
    gated_residual_backward(dx3, &s.f, &s.mods[5], n, c, &mut df, &mut dmods[5]);
    let mut dh = scratch(rows * d.ff_width);
    linear_backward(&s.g, &p.f2w, &df, rows, &mut gr.f2w, &mut gr.f2b, InputGrad::Write(&mut dh));
    gelu_backward(&s.h, &mut dh);
    let mut dn2 = df;
    linear_backward(&s.n2, &p.f1w, &dh, rows, &mut gr.f1w, &mut gr.f1b, InputGrad::Write(&mut dn2));
    let mut dx = Buf::copy_of(dx3);
    let [_, _, _, dshift2, dscale2, _] = &mut dmods;
    ln_modulate_backward(&dn2, &s.xhat2, &s.rstd2, &s.mods[4], n, c, &mut dx, dshift2, dscale2);

    // x2 = x1 + CrossAttn(x1, y)
    let mut da2 = dn2;
    linear_backward(&s.a2, &p.o2w, &dx, rows, &mut gr.o2w, &mut gr.o2b, InputGrad::Write(&mut da2));
    let (mut dq2n, mut dk2n, mut dv2) = (scratch(rows * c), scratch(caption_rows * c), scratch(caption_rows * c));
    let grads = attention::Grads {
        q: HeadsMut::dense(&mut dq2n, c),
        k: HeadsMut::dense(&mut dk2n, c),
        v: HeadsMut::dense(&mut dv2, c),
    };
    let (q2, k2, v2) = (Heads::dense(&s.q2n, c), Heads::dense(&s.k2n, c), Heads::dense(&s.v2, c));
    attention::backward(d.attn(d.caption_len), q2, k2, v2, &s.p2, Heads::dense(&da2, c), grads);
    let mut dq2 = da2;
    layer_norm_affine_backward(&dq2n, &s.q2xhat, &s.q2rstd, &p.nqw, &mut dq2, &mut gr.nqw, &mut gr.nqb);
    let mut dk2 = scratch(caption_rows * c);
    layer_norm_affine_backward(&dk2n, &s.k2xhat, &s.k2rstd, &p.nkw, &mut dk2, &mut gr.nkw, &mut gr.nkb);
    linear_backward(y, &p.k2w, &dk2, caption_rows, &mut gr.k2w, &mut gr.k2b, InputGrad::Add(dy));
    linear_backward(y, &p.v2w, &dv2, caption_rows, &mut gr.v2w, &mut gr.v2b, InputGrad::Add(dy));
    linear_backward(&s.x1, &p.q2w, &dq2, rows, &mut gr.q2w, &mut gr.q2b, InputGrad::Add(&mut dx));

    // x1 = x + gate1 * SelfAttn(n1)
    let mut do1 = dq2n;
    gated_residual_backward(&dx, &s.o1, &s.mods[2], n, c, &mut do1, &mut dmods[2]);
    let mut da1 = dq2;
    linear_backward(&s.a1, &p.o1w, &do1, rows, &mut gr.o1w, &mut gr.o1b, InputGrad::Write(&mut da1));
    let mut dqkv = scratch(rows * 3 * c);
    let [dq, dk, dv] = HeadsMut::thirds(&mut dqkv, c);
    let [q1, k1, v1] = std::array::from_fn(|i| Heads::part(&s.qkv1, c, 3, i));
    let grads = attention::Grads { q: dq, k: dk, v: dv };
    attention::backward(d.attn(n), q1, k1, v1, &s.p1, Heads::dense(&da1, c), grads);
    let mut dn1 = da1;
    let (mut dw, mut db) = (scratch(3 * c * c), scratch(3 * c));
    linear_backward(&s.n1, &s.qkv_w, &dqkv, rows, &mut dw, &mut db, InputGrad::Write(&mut dn1));
    for (i, (gw, gb)) in
        [(&mut gr.q1w, &mut gr.q1b), (&mut gr.k1w, &mut gr.k1b), (&mut gr.v1w, &mut gr.v1b)].into_iter().enumerate()
    {
        gw.copy_from_slice(&dw[i * c * c..(i + 1) * c * c]);
        gb.copy_from_slice(&db[i * c..(i + 1) * c]);
    }
    let [dshift1, dscale1, ..] = &mut dmods;
    ln_modulate_backward(&dn1, &s.xhat1, &s.rstd1, &s.mods[1], n, c, &mut dx, dshift1, dscale1);

    // (shift1 .. gate2) = t6 + table
    for (j, dm) in dmods.iter().enumerate() {
        let table = &mut gr.table[j * c..(j + 1) * c];
        for b in 0..d.batch {
            let row = &dm[b * c..(b + 1) * c];
            dt6[b * 6 * c + j * c..b * 6 * c + (j + 1) * c].iter_mut().zip(row).for_each(|(o, v)| *o += v);
            table.iter_mut().zip(row).for_each(|(o, v)| *o += v);
        }
    }
    (dx, gr)
}
