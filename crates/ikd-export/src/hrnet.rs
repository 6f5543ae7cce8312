//! timm's HRNet (as `ikd-hrnet` builds it) written as ONNX nodes, batch norm folded into the
//! convolutions. The walk mirrors `ikd_hrnet::HrNet::new` and its `forward_t` step by step —
//! the same layers, the same timm names, the same order of additions — so that the graph
//! computes what the `Predictor` computes.

use std::collections::HashMap;

use ikd_hrnet::{BlockType, HrNetConfig, BN_EPS};

use crate::graph::Graph;
use crate::{Error, Result};

/// A network's variables by timm name: shape and values.
pub(crate) struct Weights {
    /// `teacher` or `student`: the prefix of the initialisers' names.
    pub prefix: &'static str,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    fn get(&self, name: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        self.tensors.get(name).ok_or_else(|| {
            Error::Unsupported(format!(
                "the {} has no variable `{name}`: its weights do not fit the backbone's \
                 configuration",
                self.prefix
            ))
        })
    }
}

/// `conv` then eval-mode batch norm `bn` (then a ReLU if `relu`) as one `Conv` with the batch
/// norm folded in: `W' = W·s`, `b' = β − μ·s` with `s = γ / √(σ² + ε)` per output channel,
/// computed in `f32` as `ikd-hrnet`'s `eval_scale_shift` does.
fn conv_bn(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    (conv, bn): (&str, &str),
    (stride, pad): (i64, i64),
    relu: bool,
) -> Result<String> {
    let (dims, kernel) = w.get(&format!("{conv}.weight"))?;
    let [c_out, c_in, kh, kw] = dims[..] else {
        return Err(Error::Unsupported(format!("{conv}.weight has shape {dims:?}, not 4-d")));
    };
    if kh != kw {
        return Err(Error::Unsupported(format!("{conv}: a {kh}×{kw} kernel is not square")));
    }
    let gamma = &w.get(&format!("{bn}.weight"))?.1;
    let beta = &w.get(&format!("{bn}.bias"))?.1;
    let mean = &w.get(&format!("{bn}.running_mean"))?.1;
    let var = &w.get(&format!("{bn}.running_var"))?.1;
    for (what, v) in
        [("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)]
    {
        if v.len() != c_out {
            return Err(Error::Unsupported(format!(
                "{bn}.{what} has {} entries for {c_out} channels of {conv}",
                v.len()
            )));
        }
    }
    let per_out = c_in * kh * kw;
    let mut folded = Vec::with_capacity(kernel.len());
    let mut bias = Vec::with_capacity(c_out);
    for o in 0..c_out {
        let scale = gamma[o] * (var[o] + BN_EPS as f32).sqrt().recip();
        bias.push(beta[o] - mean[o] * scale);
        folded.extend(kernel[o * per_out..(o + 1) * per_out].iter().map(|k| k * scale));
    }
    let dims = [c_out as i64, c_in as i64, kh as i64, kw as i64];
    let wn = g.init_f32(&format!("{}.{conv}.weight", w.prefix), &dims, &folded);
    let bn_name = g.init_f32(&format!("{}.{conv}.bias", w.prefix), &[c_out as i64], &bias);
    let y = g.conv(x, (&wn, &bn_name), kh as i64, stride, pad);
    Ok(if relu { g.unary("Relu", &y) } else { y })
}

/// timm's `BasicBlock` / `Bottleneck` at `prefix`, stride 1 (as every HRNet block is).
fn block(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    prefix: &str,
    (kind, inplanes, planes): (BlockType, usize, usize),
) -> Result<String> {
    let layers: &[(i64, i64)] = match kind {
        // (stride, pad) of conv1, conv2[, conv3]
        BlockType::Basic => &[(1, 1), (1, 1)],
        BlockType::Bottleneck => &[(1, 0), (1, 1), (1, 0)],
    };
    let mut y = x.to_string();
    for (i, &sp) in layers.iter().enumerate() {
        let (c, b) = (format!("{prefix}.conv{}", i + 1), format!("{prefix}.bn{}", i + 1));
        y = conv_bn(g, w, &y, (&c, &b), sp, i + 1 != layers.len())?;
    }
    let shortcut = if inplanes != planes * kind.expansion() {
        let (c, b) = (format!("{prefix}.downsample.0"), format!("{prefix}.downsample.1"));
        conv_bn(g, w, x, (&c, &b), (1, 0), false)?
    } else {
        x.to_string()
    };
    let sum = g.binary("Add", &y, &shortcut);
    Ok(g.unary("Relu", &sum))
}

/// timm's `_make_layer`: `n` blocks, the first one with the shortcut projection.
fn layer(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    prefix: &str,
    (kind, inplanes, planes, n): (BlockType, usize, usize, usize),
) -> Result<String> {
    let mut y = x.to_string();
    let mut c_in = inplanes;
    for i in 0..n {
        y = block(g, w, &y, &format!("{prefix}.{i}"), (kind, c_in, planes))?;
        c_in = planes * kind.expansion();
    }
    Ok(y)
}

/// The stage-4 branch outputs of the HRNet `cfg` with weights `w` on `x` (normalised images).
pub(crate) fn hrnet(g: &mut Graph, cfg: &HrNetConfig, w: &Weights, x: &str) -> Result<Vec<String>> {
    let mut y = conv_bn(g, w, x, ("conv1", "bn1"), (2, 1), true)?;
    y = conv_bn(g, w, &y, ("conv2", "bn2"), (2, 1), true)?;
    let s1 = &cfg.stage1;
    let (planes, n) = (s1.num_channels[0], s1.num_blocks[0]);
    y = layer(g, w, &y, "layer1", (s1.block_type, 64, planes, n))?;
    let mut pre = vec![planes * s1.block_type.expansion()];
    let mut ys = vec![y];
    for (k, s) in [&cfg.stage2, &cfg.stage3, &cfg.stage4].into_iter().enumerate() {
        let cur = s.out_channels();
        let t = format!("transition{}", k + 1);
        // timm feeds transition1 the stage-1 output, later ones the previous stage's last branch
        let src = if k == 0 { ys[0].clone() } else { ys[ys.len() - 1].clone() };
        let mut xs = Vec::with_capacity(cur.len());
        for (i, &c) in cur.iter().enumerate() {
            if i < pre.len() {
                if c != pre[i] {
                    let (cn, bn) = (format!("{t}.{i}.0"), format!("{t}.{i}.1"));
                    xs.push(conv_bn(g, w, &src, (&cn, &bn), (1, 1), true)?);
                } else {
                    xs.push(ys[i].clone());
                }
            } else {
                let mut z = src.clone();
                for j in 0..=(i - pre.len()) {
                    let (cn, bn) = (format!("{t}.{i}.{j}.0"), format!("{t}.{i}.{j}.1"));
                    z = conv_bn(g, w, &z, (&cn, &bn), (2, 1), true)?;
                }
                xs.push(z);
            }
        }
        let mut num_in = cur.clone();
        for m in 0..s.num_modules {
            let p = format!("stage{}.{m}", k + 2);
            let mut branches = Vec::with_capacity(xs.len());
            for (i, x) in xs.iter().enumerate() {
                let spec = (s.block_type, num_in[i], s.num_channels[i], s.num_blocks[i]);
                branches.push(layer(g, w, x, &format!("{p}.branches.{i}"), spec)?);
                num_in[i] = s.num_channels[i] * s.block_type.expansion();
            }
            if branches.len() == 1 {
                xs = branches;
                continue;
            }
            let mut out = Vec::with_capacity(branches.len());
            for i in 0..branches.len() {
                let mut zs = Vec::with_capacity(branches.len());
                for (j, b) in branches.iter().enumerate() {
                    let f = format!("{p}.fuse_layers.{i}.{j}");
                    zs.push(if j > i {
                        let (cn, bn) = (format!("{f}.0"), format!("{f}.1"));
                        let z = conv_bn(g, w, b, (&cn, &bn), (1, 0), false)?;
                        // nearest upsampling by 2^(j−i): every pixel repeated
                        g.resize(&z, 1 << (j - i), "nearest", "asymmetric")
                    } else if j == i {
                        b.clone()
                    } else {
                        let mut z = b.clone();
                        for q in 0..i - j {
                            let (cn, bn) = (format!("{f}.{q}.0"), format!("{f}.{q}.1"));
                            z = conv_bn(g, w, &z, (&cn, &bn), (2, 1), q != i - j - 1)?;
                        }
                        z
                    });
                }
                // relu(z_0 + … + z_k), summed left to right as ikd-hrnet does
                let mut acc = zs[0].clone();
                for z in &zs[1..] {
                    acc = g.binary("Add", &acc, z);
                }
                out.push(g.unary("Relu", &acc));
            }
            xs = out;
        }
        pre = num_in;
        ys = xs;
    }
    Ok(ys)
}
