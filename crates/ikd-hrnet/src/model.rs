//! HRNet (Wang et al., *Deep High-Resolution Representation Learning for Visual Recognition*,
//! TPAMI 2020, <https://arxiv.org/abs/1908.07919>) as timm's `HighResolutionNet` builds it,
//! without the classification head.
//!
//! The stem is two stride-2 3×3 convolutions, stage 1 a layer of bottlenecks, and stages 2–4
//! stacks of high-resolution modules whose parallel branches of basic blocks exchange
//! information through SUM fuse layers (1×1 conv + BN + nearest upsampling from lower
//! resolutions, chains of strided 3×3 conv + BN from higher ones). Variable names follow timm's
//! `state_dict` keys, so timm checkpoints load by name.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use ikd_kernels::KernelPolicy;

use crate::config::{BlockType, HrNetConfig};
use crate::resize::resize_bilinear_align_corners;
use crate::BatchNorm2d;

/// A bias-free convolution with timm's init (Kaiming normal, fan-out, ReLU gain).
#[derive(Debug, Clone)]
struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let fan_out = (c_out * k * k) as f64;
        let init = Init::Randn { mean: 0., stdev: (2. / fan_out).sqrt() };
        let weight = vb.get_with_hints((c_out, c_in, k, k), "weight", init)?;
        Ok(Self { weight, stride, padding })
    }

    fn forward(&self, x: &Tensor, p: &KernelPolicy) -> Result<Tensor> {
        ikd_kernels::conv2d(x, &self.weight, self.stride, self.padding, p)
    }
}

/// Convolution followed by batch norm (timm's `Sequential(Conv2d, BatchNorm2d[, ReLU])` whose
/// children are `0` and `1`).
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv,
    bn: BatchNorm2d,
    relu: bool,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        relu: bool,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv::new(c_in, c_out, k, stride, padding, vb.pp("0"))?,
            bn: BatchNorm2d::new(c_out, vb.pp("1"))?,
            relu,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool, p: &KernelPolicy) -> Result<Tensor> {
        conv_bn(&self.conv, &self.bn, x, (train, self.relu), p)
    }
}

/// `bn(conv(x))`, then a ReLU if `relu`. In eval mode one op: the batch norm is a per-channel
/// affine map applied while the convolution's output is in cache.
fn conv_bn(
    conv: &Conv,
    bn: &BatchNorm2d,
    x: &Tensor,
    (train, relu): (bool, bool),
    p: &KernelPolicy,
) -> Result<Tensor> {
    if train {
        return bn.forward_relu_t(&conv.forward(x, p)?, true, relu, p);
    }
    let ss = bn.eval_scale_shift(x.dtype())?;
    let (w, stride, padding) = (&conv.weight, conv.stride, conv.padding);
    ikd_kernels::conv2d_affine(x, w, stride, padding, (&ss.0, &ss.1), relu, p)
}

/// timm's `BasicBlock` / `Bottleneck` (resnet.py) with an optional `downsample` shortcut.
#[derive(Debug, Clone)]
struct Block {
    convs: Vec<(Conv, BatchNorm2d)>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn new(
        kind: BlockType,
        inplanes: usize,
        planes: usize,
        stride: usize,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let out = planes * kind.expansion();
        let downsample = if stride != 1 || inplanes != out {
            Some(ConvBn::new(inplanes, out, 1, stride, 0, false, vb.pp("downsample"))?)
        } else {
            None
        };
        let layer = |i: usize, c_in, c_out, k, s, p| -> Result<(Conv, BatchNorm2d)> {
            Ok((
                Conv::new(c_in, c_out, k, s, p, vb.pp(format!("conv{i}")))?,
                BatchNorm2d::new(c_out, vb.pp(format!("bn{i}")))?,
            ))
        };
        let convs = match kind {
            BlockType::Basic => {
                vec![layer(1, inplanes, planes, 3, stride, 1)?, layer(2, planes, planes, 3, 1, 1)?]
            }
            BlockType::Bottleneck => vec![
                layer(1, inplanes, planes, 1, 1, 0)?,
                layer(2, planes, planes, 3, stride, 1)?,
                layer(3, planes, out, 1, 1, 0)?,
            ],
        };
        Ok(Self { convs, downsample })
    }

    fn forward_t(&self, x: &Tensor, train: bool, p: &KernelPolicy) -> Result<Tensor> {
        let last = self.convs.len() - 1;
        let mut y = x.clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            y = conv_bn(conv, bn, &y, (train, i != last), p)?;
        }
        let shortcut = match &self.downsample {
            Some(d) => d.forward_t(x, train, p)?,
            None => x.clone(),
        };
        ikd_kernels::add_relu(&y, &shortcut, p)
    }
}

/// timm's `_make_layer`: `num_blocks` blocks, the first one with the shortcut projection.
fn make_layer(
    kind: BlockType,
    inplanes: usize,
    planes: usize,
    num_blocks: usize,
    vb: VarBuilder<'_>,
) -> Result<Vec<Block>> {
    let mut blocks = Vec::with_capacity(num_blocks);
    let mut c_in = inplanes;
    for i in 0..num_blocks {
        blocks.push(Block::new(kind, c_in, planes, 1, vb.pp(i.to_string()))?);
        c_in = planes * kind.expansion();
    }
    Ok(blocks)
}

fn forward_blocks(blocks: &[Block], x: &Tensor, train: bool, p: &KernelPolicy) -> Result<Tensor> {
    let mut y = x.clone();
    for b in blocks {
        y = b.forward_t(&y, train, p)?;
    }
    Ok(y)
}

/// Runs a chain of conv + BN (+ ReLU) layers.
fn forward_chain(chain: &[ConvBn], x: &Tensor, train: bool, p: &KernelPolicy) -> Result<Tensor> {
    let mut y = x.clone();
    for cb in chain {
        y = cb.forward_t(&y, train, p)?;
    }
    Ok(y)
}

/// One entry `fuse_layers.i.j` of a high-resolution module.
#[derive(Debug, Clone)]
enum Fuse {
    /// `j == i`.
    Identity,
    /// `j > i`: 1×1 conv + BN, then nearest upsampling by `factor`.
    Up { proj: ConvBn, factor: usize },
    /// `j < i`: `i − j` strided 3×3 conv + BN (ReLU on all but the last).
    Down(Vec<ConvBn>),
}

/// timm's `HighResolutionModule` with SUM fusion and multi-scale output.
#[derive(Debug, Clone)]
struct HrModule {
    branches: Vec<Vec<Block>>,
    fuse: Vec<Vec<Fuse>>,
}

impl HrModule {
    fn new(
        kind: BlockType,
        num_blocks: &[usize],
        num_in_chs: &mut [usize],
        num_channels: &[usize],
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let nb = num_blocks.len();
        let mut branches = Vec::with_capacity(nb);
        for i in 0..nb {
            let vbb = vb.pp("branches").pp(i.to_string());
            branches.push(make_layer(kind, num_in_chs[i], num_channels[i], num_blocks[i], vbb)?);
            num_in_chs[i] = num_channels[i] * kind.expansion();
        }
        let mut fuse = Vec::new();
        if nb > 1 {
            for i in 0..nb {
                let mut row = Vec::with_capacity(nb);
                for j in 0..nb {
                    let vbf = vb.pp("fuse_layers").pp(i.to_string()).pp(j.to_string());
                    let f = if j > i {
                        let proj = ConvBn::new(num_in_chs[j], num_in_chs[i], 1, 1, 0, false, vbf)?;
                        Fuse::Up { proj, factor: 1 << (j - i) }
                    } else if j == i {
                        Fuse::Identity
                    } else {
                        let mut chain = Vec::with_capacity(i - j);
                        for k in 0..i - j {
                            let last = k == i - j - 1;
                            let c_out = if last { num_in_chs[i] } else { num_in_chs[j] };
                            let vbk = vbf.pp(k.to_string());
                            chain.push(ConvBn::new(num_in_chs[j], c_out, 3, 2, 1, !last, vbk)?);
                        }
                        Fuse::Down(chain)
                    };
                    row.push(f);
                }
                fuse.push(row);
            }
        }
        Ok(Self { branches, fuse })
    }

    fn forward_t(&self, xs: &[Tensor], train: bool, p: &KernelPolicy) -> Result<Vec<Tensor>> {
        if xs.len() != self.branches.len() {
            candle_core::bail!(
                "high-resolution module with {} branches got {} inputs",
                self.branches.len(),
                xs.len()
            )
        }
        let ys: Vec<Tensor> = self
            .branches
            .iter()
            .zip(xs)
            .map(|(b, x)| forward_blocks(b, x, train, p))
            .collect::<Result<_>>()?;
        if self.fuse.is_empty() {
            return Ok(ys);
        }
        let mut out = Vec::with_capacity(self.fuse.len());
        for row in &self.fuse {
            let mut zs = Vec::with_capacity(row.len());
            for (f, y) in row.iter().zip(&ys) {
                zs.push(match f {
                    Fuse::Identity => y.clone(),
                    Fuse::Up { proj, factor } => {
                        ikd_kernels::upsample_nearest(&proj.forward_t(y, train, p)?, *factor, p)?
                    }
                    Fuse::Down(chain) => forward_chain(chain, y, train, p)?,
                });
            }
            // relu(z_0 + … + z_k), the last addition fused with the ReLU.
            let Some(last) = zs.pop() else { candle_core::bail!("empty fuse layer") };
            let mut acc: Option<Tensor> = None;
            for z in zs {
                acc = Some(match acc {
                    None => z,
                    Some(a) => (a + z)?,
                });
            }
            match acc {
                Some(acc) => out.push(ikd_kernels::add_relu(&acc, &last, p)?),
                None => out.push(last.relu()?),
            }
        }
        Ok(out)
    }
}

/// One entry of a transition layer (`transitionK.i`).
#[derive(Debug, Clone)]
enum Transition {
    /// Same width as the previous stage's branch: pass through.
    Identity,
    /// An existing branch whose width changes: `transitionK.i.{0,1}` (3×3 conv, BN, ReLU).
    Width(ConvBn),
    /// A new, lower-resolution branch: `transitionK.i.j.{0,1}`, strided 3×3 conv chains.
    New(Vec<ConvBn>),
}

impl Transition {
    fn forward_t(&self, x: &Tensor, train: bool, p: &KernelPolicy) -> Result<Tensor> {
        match self {
            Transition::Identity => Ok(x.clone()),
            Transition::Width(cb) => cb.forward_t(x, train, p),
            Transition::New(chain) => forward_chain(chain, x, train, p),
        }
    }
}

/// timm's `_make_transition_layer`.
fn make_transition(pre: &[usize], cur: &[usize], vb: VarBuilder<'_>) -> Result<Vec<Transition>> {
    let mut layers = Vec::with_capacity(cur.len());
    for (i, &c) in cur.iter().enumerate() {
        let vbi = vb.pp(i.to_string());
        if i < pre.len() {
            if c != pre[i] {
                layers.push(Transition::Width(ConvBn::new(pre[i], c, 3, 1, 1, true, vbi)?));
            } else {
                layers.push(Transition::Identity);
            }
        } else {
            let last_pre = pre[pre.len() - 1];
            let mut chain = Vec::new();
            for j in 0..=(i - pre.len()) {
                let c_out = if j == i - pre.len() { c } else { last_pre };
                chain.push(ConvBn::new(last_pre, c_out, 3, 2, 1, true, vbi.pp(j.to_string()))?);
            }
            layers.push(Transition::New(chain));
        }
    }
    Ok(layers)
}

fn to3<T>(v: Vec<T>) -> Result<[T; 3]> {
    v.try_into()
        .map_err(|v: Vec<T>| candle_core::Error::Msg(format!("expected 3 stages, got {}", v.len())))
}

/// A stage: its modules in order.
#[derive(Debug, Clone)]
struct Stage {
    modules: Vec<HrModule>,
}

impl Stage {
    fn forward_t(&self, xs: Vec<Tensor>, train: bool, p: &KernelPolicy) -> Result<Vec<Tensor>> {
        let mut xs = xs;
        for m in &self.modules {
            xs = m.forward_t(&xs, train, p)?;
        }
        Ok(xs)
    }
}

/// The HRNet backbone: stem, stage 1 and stages 2–4 with their transitions. The classification
/// head of timm's model (`incre_modules`, `downsamp_modules`, `final_layer`, `classifier`) is not
/// built. Its layers run on the kernels of `ikd-kernels` as its [`KernelPolicy`] allows (all of
/// them by default; see [`HrNet::with_kernel_policy`]).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// use ikd_hrnet::{HrNet, HrNetConfig};
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let model = HrNet::new(&HrNetConfig::w18_small(), vb)?;
/// let x = Tensor::randn(0f32, 1., (1, 3, 64, 64), &Device::Cpu)?;
/// let ys = model.forward_t(&x, false)?;
/// assert_eq!(ys[0].dims(), &[1, 16, 16, 16]);
/// assert_eq!(ys[3].dims(), &[1, 128, 2, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HrNet {
    cfg: HrNetConfig,
    stem: [ConvBn; 2],
    layer1: Vec<Block>,
    transitions: [Vec<Transition>; 3],
    stages: [Stage; 3],
    out_channels: Vec<usize>,
    policy: KernelPolicy,
}

impl HrNet {
    /// Builds the network for `cfg`, reading (or, with a `VarMap`-backed builder, creating with
    /// timm's initialisation) every variable under timm's name: `conv1`, `bn1`, `conv2`, `bn2`,
    /// `layer1.*`, `transition{1,2,3}.*`, `stage{2,3,4}.*`.
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use candle_nn::{VarBuilder, VarMap};
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// assert!(varmap.data().lock().unwrap().contains_key("stage4.0.fuse_layers.3.0.2.0.weight"));
    /// assert_eq!(model.out_channels(), &[16, 32, 64, 128]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(cfg: &HrNetConfig, vb: VarBuilder<'_>) -> crate::Result<Self> {
        cfg.validate()?;
        let sw = cfg.stem_width;
        let stem1 = ConvBn::new_named(cfg.in_chans, sw, 3, 2, 1, &vb, "conv1", "bn1")?;
        let stem2 = ConvBn::new_named(sw, 64, 3, 2, 1, &vb, "conv2", "bn2")?;

        let s1 = &cfg.stage1;
        let layer1 =
            make_layer(s1.block_type, 64, s1.num_channels[0], s1.num_blocks[0], vb.pp("layer1"))?;
        let mut pre = vec![s1.num_channels[0] * s1.block_type.expansion()];

        let mut transitions = Vec::with_capacity(3);
        let mut stages = Vec::with_capacity(3);
        for (k, s) in [&cfg.stage2, &cfg.stage3, &cfg.stage4].into_iter().enumerate() {
            let cur = s.out_channels();
            transitions.push(make_transition(&pre, &cur, vb.pp(format!("transition{}", k + 1)))?);
            let mut num_in_chs = cur.clone();
            let mut modules = Vec::with_capacity(s.num_modules);
            let vbs = vb.pp(format!("stage{}", k + 2));
            for m in 0..s.num_modules {
                modules.push(HrModule::new(
                    s.block_type,
                    &s.num_blocks,
                    &mut num_in_chs,
                    &s.num_channels,
                    vbs.pp(m.to_string()),
                )?);
            }
            stages.push(Stage { modules });
            pre = num_in_chs;
        }
        Ok(Self {
            cfg: cfg.clone(),
            stem: [stem1, stem2],
            layer1,
            transitions: to3(transitions)?,
            stages: to3(stages)?,
            out_channels: pre,
            policy: KernelPolicy::default(),
        })
    }

    /// The network with its layers on the kernels `policy` allows ([`KernelPolicy::candle`]:
    /// candle's own ops everywhere); the default is [`KernelPolicy::default`], every kernel.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use candle_nn::{VarBuilder, VarMap};
    /// use ikd_hrnet::{HrNet, HrNetConfig, KernelPolicy};
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let fast = HrNet::new(&HrNetConfig::w18_small(), vb)?;
    /// let slow = fast.clone().with_kernel_policy(KernelPolicy::candle()); // the same variables
    /// assert_eq!(slow.kernel_policy(), KernelPolicy::candle());
    /// let x = Tensor::randn(0f32, 1., (1, 3, 64, 64), &Device::Cpu)?;
    /// let (a, b) = (&fast.forward_t(&x, false)?[0], &slow.forward_t(&x, false)?[0]);
    /// assert!((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_kernel_policy(mut self, policy: KernelPolicy) -> Self {
        self.set_kernel_policy(policy);
        self
    }

    /// Sets the [`KernelPolicy`] of the layers (see [`HrNet::with_kernel_policy`]).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let mut model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// let p = ikd_hrnet::KernelPolicy { winograd_f43: false, ..Default::default() };
    /// model.set_kernel_policy(p);
    /// assert_eq!(model.kernel_policy(), p);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_kernel_policy(&mut self, policy: KernelPolicy) {
        self.policy = policy;
    }

    /// The [`KernelPolicy`] the layers run with.
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// assert_eq!(model.kernel_policy(), ikd_hrnet::KernelPolicy::default());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kernel_policy(&self) -> KernelPolicy {
        self.policy
    }

    /// The configuration the network was built from.
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// assert_eq!(model.config().stem_width, 64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config(&self) -> &HrNetConfig {
        &self.cfg
    }

    /// Channels of each stage-4 branch output (and of each IKD feature map).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w32(), vb)?;
    /// assert_eq!(model.out_channels(), &[32, 64, 128, 256]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn out_channels(&self) -> &[usize] {
        &self.out_channels
    }

    /// Runs the network on `x: (N, in_chans, H, W)` and returns the stage-4 branch maps, from
    /// the highest resolution (`H/4 × W/4`) down (`H/32 × W/32` for four branches).
    ///
    /// `train = true` normalises with batch statistics and updates the BatchNorm running
    /// statistics (PyTorch's `model.train()`); `train = false` uses the running statistics.
    /// For training, keep `H` and `W` equal or both multiples of 32 (candle's conv2d backward).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// let x = Tensor::randn(0f32, 1., (2, 3, 64, 64), &Device::Cpu)?;
    /// let ys = model.forward_t(&x, true)?;
    /// assert_eq!(ys.len(), 4);
    /// assert_eq!(ys[1].dims(), &[2, 32, 8, 8]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        if x.device().is_cpu() {
            ikd_kernels::in_pool(|| self.forward_inner(x, train))
        } else {
            self.forward_inner(x, train)
        }
    }

    fn forward_inner(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let p = &self.policy;
        let mut y = x.clone();
        for s in &self.stem {
            y = s.forward_t(&y, train, p)?;
        }
        let y = forward_blocks(&self.layer1, &y, train, p)?;
        let mut ys = vec![y];
        for (k, (trans, stage)) in self.transitions.iter().zip(&self.stages).enumerate() {
            let xs = trans
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Transition::Identity => Ok(ys[i].clone()),
                    // timm feeds transition1 the stage-1 output and later transitions the
                    // previous stage's last branch.
                    _ if k == 0 => t.forward_t(&ys[0], train, p),
                    _ => t.forward_t(&ys[ys.len() - 1], train, p),
                })
                .collect::<Result<Vec<_>>>()?;
            ys = stage.forward_t(xs, train, p)?;
        }
        Ok(ys)
    }

    /// The IKD features: the stage-4 branch maps with branches 1.. resized to branch 0's size by
    /// bilinear interpolation with align_corners=true ([`resize_bilinear_align_corners`]).
    /// Gradients flow through the resize, so a student can train on them.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// let x = Tensor::randn(0f32, 1., (1, 3, 64, 64), &Device::Cpu)?;
    /// let fs = model.ikd_features(&x, false)?;
    /// assert_eq!(fs[3].dims(), &[1, 128, 16, 16]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ikd_features(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let ys = self.forward_t(x, train)?;
        let (_, _, h, w) = ys[0].dims4()?;
        ys.iter().map(|y| resize_bilinear_align_corners(y, h, w)).collect()
    }

    /// [`HrNet::ikd_features`] for a consumer that reads only the branches in `levels` (a
    /// loss, an anomaly map): those are resized to branch 0's size, the others come back at
    /// their own size, unresized, so that entry `i` is still branch `i`. Saves the resize of
    /// the unread branches (for HRNet-W32 at 256², branch 3's 256 channels at 8² → 64²).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// let x = Tensor::randn(0f32, 1., (1, 3, 64, 64), &Device::Cpu)?;
    /// let fs = model.ikd_features_at(&x, false, &[1, 2])?;
    /// assert_eq!(fs[2].dims(), &[1, 64, 16, 16]); // resized
    /// assert_eq!(fs[3].dims(), &[1, 128, 2, 2]); // as the branch left it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ikd_features_at(
        &self,
        x: &Tensor,
        train: bool,
        levels: &[usize],
    ) -> Result<Vec<Tensor>> {
        let ys = self.forward_t(x, train)?;
        let (_, _, h, w) = ys[0].dims4()?;
        ys.iter()
            .enumerate()
            .map(|(i, y)| {
                if levels.contains(&i) {
                    resize_bilinear_align_corners(y, h, w)
                } else {
                    Ok(y.clone())
                }
            })
            .collect()
    }

    /// Stem batch norms `bn1` and `bn2` (to inspect running statistics).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = ikd_hrnet::HrNet::new(&ikd_hrnet::HrNetConfig::w18_small(), vb)?;
    /// assert_eq!(model.stem_batch_norms()[0].running_mean().dims(), &[64]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stem_batch_norms(&self) -> [&BatchNorm2d; 2] {
        [&self.stem[0].bn, &self.stem[1].bn]
    }
}

impl ConvBn {
    /// Stem layers are named `convN` / `bnN` directly under the root.
    #[allow(clippy::too_many_arguments)]
    fn new_named(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        vb: &VarBuilder<'_>,
        conv: &str,
        bn: &str,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv::new(c_in, c_out, k, stride, padding, vb.pp(conv))?,
            bn: BatchNorm2d::new(c_out, vb.pp(bn))?,
            relu: true,
        })
    }
}
