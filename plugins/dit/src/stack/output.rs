//! The final layer after the blocks: `LN(x) * (1 + scale) + shift` with
//! `(shift, scale) = scale_shift_table + e_t`, then the linear projection to patch pixels.

use super::kernels::{InputGrad, Modulation, linear, linear_backward, ln_modulate, ln_modulate_backward};
use super::pool::Buf;

/// The final layer's parameters: `scale_shift_table` (2, C), `proj_out.weight` (P, C) and
/// `proj_out.bias` (P), in that order.
pub type OutputParams<T> = [T; 3];

/// What the backward pass needs of the forward pass.
pub struct OutputSaved {
    scale: Buf,
    xhat: Buf,
    rstd: Buf,
    normed: Buf,
}

/// `(shift, scale)` rows per sample: the table's rows plus `e_t`.
fn modulation(table: &[f32], e_t: &[f32], c: usize) -> (Buf, Buf) {
    let (mut shift, mut scale) = (Buf::scratch(e_t.len()), Buf::scratch(e_t.len()));
    for (b, e) in e_t.chunks(c).enumerate() {
        for i in 0..c {
            shift[b * c + i] = table[i] + e[i];
            scale[b * c + i] = table[c + i] + e[i];
        }
    }
    (shift, scale)
}

/// The final layer on `x` (B*N, C) given `e_t` (B, C): returns (B*N, P).
pub fn forward(p: &OutputParams<Vec<f32>>, tokens: usize, x: &[f32], e_t: &[f32]) -> (Buf, OutputSaved) {
    let [table, w, bias] = p;
    let c = table.len() / 2;
    let rows = x.len() / c;
    let (shift, scale) = modulation(table, e_t, c);
    let (mut normed, mut xhat, mut rstd) = (Buf::scratch(x.len()), Buf::scratch(x.len()), Buf::scratch(rows));
    ln_modulate(x, Modulation { shift: &shift, scale: &scale }, tokens, c, &mut normed, &mut xhat, &mut rstd);
    let mut out = Buf::scratch(rows * bias.len());
    linear(&normed, w, bias, rows, c, &mut out);
    (out, OutputSaved { scale, xhat, rstd, normed })
}

/// Gradients of [`forward`]: `(dx, de_t, parameter gradients)`.
pub fn backward(
    p: &OutputParams<Vec<f32>>,
    s: &OutputSaved,
    tokens: usize,
    dout: &[f32],
) -> (Buf, Buf, OutputParams<Buf>) {
    let [table, w, bias] = p;
    let c = table.len() / 2;
    let rows = s.xhat.len() / c;
    let (mut dtable, mut dw, mut db) = (Buf::zeroed(2 * c), Buf::scratch(w.len()), Buf::scratch(bias.len()));
    let mut dnormed = Buf::scratch(rows * c);
    linear_backward(&s.normed, w, dout, rows, &mut dw, &mut db, InputGrad::Write(&mut dnormed));
    let batch = rows / tokens;
    let (mut dx, mut dshift, mut dscale) = (Buf::zeroed(rows * c), Buf::scratch(batch * c), Buf::scratch(batch * c));
    ln_modulate_backward(&dnormed, &s.xhat, &s.rstd, &s.scale, tokens, c, &mut dx, &mut dshift, &mut dscale);
    let mut de_t = Buf::scratch(batch * c);
    for b in 0..batch {
        for i in 0..c {
            let (gs, gc) = (dshift[b * c + i], dscale[b * c + i]);
            de_t[b * c + i] = gs + gc;
            dtable[i] += gs;
            dtable[c + i] += gc;
        }
    }
    (dx, de_t, [dtable, dw, db])
}
