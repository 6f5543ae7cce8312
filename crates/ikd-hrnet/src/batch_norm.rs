//! A 2-d batch normalisation with PyTorch's semantics.
//!
//! Training mode normalises with the batch statistics (biased variance over N·H·W) and updates the
//! running estimates as `running ← (1 − momentum)·running + momentum·batch`, with the *unbiased*
//! batch variance, exactly as `torch.nn.BatchNorm2d` does. The update is computed on detached
//! tensors, so it never extends the gradient graph. Evaluation mode uses the running estimates,
//! folded into one per-channel scale and shift. Both run as `ikd-kernels`' layer functions.

use candle_core::{DType, ModuleT, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use ikd_kernels::{BatchStats, KernelPolicy};

/// PyTorch's default momentum of the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;
/// PyTorch's default epsilon.
pub const BN_EPS: f64 = 1e-5;

/// `BatchNorm2d` over the channel dimension of an `(N, C, H, W)` tensor.
///
/// Parameters are read from `vb` as `weight`, `bias`, `running_mean` and `running_var` (timm's
/// names). When `vb` is backed by a `VarMap`, the running statistics are the map's variables and
/// training-mode forwards update them in place. `ModuleT::forward_t` runs with the default
/// [`KernelPolicy`]; [`BatchNorm2d::forward_relu_t`] takes one.
///
/// ```
/// use candle_core::{DType, Device, ModuleT, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// use ikd_hrnet::BatchNorm2d;
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let bn = BatchNorm2d::new(2, vb.pp("bn"))?;
/// let x = Tensor::arange(0f32, 8., &Device::Cpu)?.reshape((2, 2, 1, 2))?;
/// let y = bn.forward_t(&x, true)?;
/// assert_eq!(y.dims(), &[2, 2, 1, 2]);
/// // the running mean moved 10% of the way towards the batch mean (2.5 and 4.5)
/// let rm = bn.running_mean().to_vec1::<f32>()?;
/// assert!((rm[0] - 0.25).abs() < 1e-6 && (rm[1] - 0.45).abs() < 1e-6);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
}

impl BatchNorm2d {
    /// Builds the layer for `num_features` channels (weight 1, bias 0, running mean 0 and
    /// running variance 1 at initialisation, as PyTorch).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let _bn = ikd_hrnet::BatchNorm2d::new(8, vb)?;
    /// assert_eq!(varmap.all_vars().len(), 4);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn new(num_features: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let weight = vb.get_with_hints(num_features, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(num_features, "bias", Init::Const(0.))?;
        let running_mean = vb.get_with_hints(num_features, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(num_features, "running_var", Init::Const(1.))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            momentum: BN_MOMENTUM,
            eps: BN_EPS,
        })
    }

    /// The current running mean (a detached copy-free view).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let bn = ikd_hrnet::BatchNorm2d::new(3, vb)?;
    /// assert_eq!(bn.running_mean().to_vec1::<f32>()?, vec![0.0; 3]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn running_mean(&self) -> Tensor {
        self.running_mean.as_tensor().detach()
    }

    /// The current running variance.
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// # let varmap = VarMap::new();
    /// # let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let bn = ikd_hrnet::BatchNorm2d::new(3, vb)?;
    /// assert_eq!(bn.running_var().to_vec1::<f32>()?, vec![1.0; 3]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn running_var(&self) -> Tensor {
        self.running_var.as_tensor().detach()
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        let c = self.weight.dim(0)?;
        if x.rank() != 4 || x.dim(1)? != c {
            candle_core::bail!("batch-norm expects (N, {c}, H, W), got {:?}", x.shape())
        }
        Ok(())
    }

    /// The layer followed by a ReLU when `relu`, on the kernels `policy` allows (fused into
    /// one pass on the CPU; [`KernelPolicy::candle`]: candle's ops); `forward_relu_t(x, train,
    /// false, &KernelPolicy::default())` is `forward_t(x, train)`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use candle_nn::{VarBuilder, VarMap};
    /// use ikd_hrnet::KernelPolicy;
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let bn = ikd_hrnet::BatchNorm2d::new(2, vb)?;
    /// let x = Tensor::arange(0f32, 8., &Device::Cpu)?.reshape((2, 2, 1, 2))?;
    /// for p in [KernelPolicy::default(), KernelPolicy::candle()] {
    ///     let y = bn.forward_relu_t(&x, true, true, &p)?;
    ///     assert_eq!(y.min_all()?.to_scalar::<f32>()?, 0.);
    /// }
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn forward_relu_t(
        &self,
        x: &Tensor,
        train: bool,
        relu: bool,
        policy: &KernelPolicy,
    ) -> Result<Tensor> {
        self.check(x)?;
        if !train {
            let (scale, shift) = self.eval_scale_shift(x.dtype())?;
            return ikd_kernels::channel_affine(x, &scale, &shift, relu, policy);
        }
        let (w, b) = (&self.weight, &self.bias);
        let (y, stats) = ikd_kernels::batch_norm_train(x, w, b, self.eps, relu, policy)?;
        self.update_running(&stats)?;
        Ok(y)
    }

    /// `running ← (1 − momentum)·running + momentum·batch` (unbiased variance), detached.
    fn update_running(&self, stats: &BatchStats) -> Result<()> {
        let m = self.momentum;
        let bmean = stats.mean.flatten_all()?.to_dtype(self.running_mean.dtype())?;
        let bvar = stats.unbiased_var()?.to_dtype(self.running_var.dtype())?;
        let rm = ((self.running_mean.as_tensor().detach() * (1. - m))? + (bmean * m)?)?;
        let rv = ((self.running_var.as_tensor().detach() * (1. - m))? + (bvar * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }

    /// Eval mode's per-channel `(scale, shift)`; differentiable in weight and bias.
    pub(crate) fn eval_scale_shift(&self, dtype: DType) -> Result<(Tensor, Tensor)> {
        let var = self.running_var.as_tensor().detach().to_dtype(dtype)?;
        let mean = self.running_mean.as_tensor().detach().to_dtype(dtype)?;
        let scale = self.weight.to_dtype(dtype)?.mul(&(var + self.eps)?.sqrt()?.recip()?)?;
        let shift = self.bias.to_dtype(dtype)?.sub(&mean.mul(&scale)?)?;
        Ok((scale, shift))
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_relu_t(x, train, false, &KernelPolicy::default())
    }
}
