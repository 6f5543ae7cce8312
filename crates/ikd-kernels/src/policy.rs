//! Which kernels run: a value the caller passes, never a process-wide switch.

use candle_core::{DType, Tensor};

/// The vector instruction sets the kernels have code for, narrowest first. A [`KernelPolicy`]
/// names the widest one its kernels may use ([`KernelPolicy::simd`]); they use the widest the
/// CPU has up to that (detected at run time, see [`Simd::detect`]), so an AVX-512 machine also
/// runs — and tests — an AVX2 machine's path.
///
/// ```
/// use ikd_kernels::Simd;
/// assert!(Simd::Scalar < Simd::Avx2Fma && Simd::Avx2Fma < Simd::Avx512);
/// assert_eq!(Simd::Avx2Fma.name(), "avx2-fma");
/// assert!(Simd::detect() >= Simd::Scalar);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Simd {
    /// No explicit vector code of this crate: its portable kernels only (the compiler's
    /// baseline vectors), im2col for every convolution. The matrix products still take the
    /// `gemm` crate's kernels for the widest set the CPU has: this is a path to check the
    /// portable kernels on, not a CPU without AVX2 (`gemm`'s portable kernel multiplies and adds
    /// without FMA, some 10× slower, and this project supports no such CPU).
    Scalar,
    /// AVX2 with FMA (8 floats a vector): Intel since Haswell, AMD since Zen 1. The Winograd
    /// kernels run each 16-lane step as two 8-wide instructions, and the matrix products take
    /// `gemm`'s AVX2 + FMA kernels, so an AVX-512 CPU capped here runs an AVX2 CPU's code.
    Avx2Fma,
    /// AVX-512F (16 floats a vector).
    Avx512,
}

impl Simd {
    /// The widest set this CPU has.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx2Fma;
            }
        }
        Simd::Scalar
    }

    /// Short name: `scalar`, `avx2-fma`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2Fma => "avx2-fma",
            Simd::Avx512 => "avx512",
        }
    }

    /// The set named `name` ([`Simd::name`]; also `avx2` for [`Simd::Avx2Fma`]).
    ///
    /// ```
    /// assert_eq!(ikd_kernels::Simd::parse("avx2"), Some(ikd_kernels::Simd::Avx2Fma));
    /// assert_eq!(ikd_kernels::Simd::parse("sse"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Simd::Scalar),
            "avx2" | "avx2-fma" => Some(Simd::Avx2Fma),
            "avx512" | "avx512f" => Some(Simd::Avx512),
            _ => None,
        }
    }

    /// Every set this CPU has, narrowest first: the paths a test on this machine can run.
    ///
    /// ```
    /// let all = ikd_kernels::Simd::supported();
    /// assert_eq!(all[0], ikd_kernels::Simd::Scalar);
    /// assert_eq!(*all.last().unwrap(), ikd_kernels::Simd::detect());
    /// ```
    pub fn supported() -> Vec<Self> {
        let top = Self::detect();
        [Simd::Scalar, Simd::Avx2Fma, Simd::Avx512].into_iter().filter(|s| *s <= top).collect()
    }
}

impl std::fmt::Display for Simd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of this crate's kernels an operation may use. Every layer function takes one; a model
/// keeps one and passes it down, and the custom ops carry it into their backward pass, so the
/// gradient takes the same algorithms as the forward pass.
///
/// `Default` turns everything on (where the tensors and the CPU allow it);
/// [`KernelPolicy::candle`] turns everything off. A path whose switch is on still runs only
/// where it applies: the kernels on CPU tensors of f32 or f64, Winograd on 3×3 stride-1 f32
/// convolutions on CPUs with AVX-512F or AVX2 + FMA (checked at run time, see
/// [`KernelPolicy::effective`]).
///
/// ```
/// use ikd_kernels::KernelPolicy;
/// let p = KernelPolicy { winograd_f43: false, ..Default::default() }; // F(2×2, 3×3) only
/// assert!(p.cpu_kernels && p.winograd && !p.winograd_f43);
/// assert_ne!(p, KernelPolicy::candle());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPolicy {
    /// This crate's CPU kernels at all. Off, every layer function runs candle's own ops (to
    /// compare speed or results).
    pub cpu_kernels: bool,
    /// Winograd's F(2×2, 3×3) for 3×3 stride-1 padding-1 f32 convolutions, forward and input
    /// gradient. Off, they take the im2col path like every other convolution.
    pub winograd: bool,
    /// Winograd's F(4×4, 3×3) instead of F(2×2, 3×3) on images at least
    /// [`crate::WINOGRAD_F43_MIN_SIDE`] pixels a side, with a width that is a multiple of 16 and
    /// a height that is a multiple of 4, and at least [`crate::WINOGRAD_F43_MIN_CHANNELS`] input
    /// and output channels: 44 % fewer multiplications, rounding about 5–10× larger (relative
    /// error ~1e-6). Needs [`KernelPolicy::winograd`].
    pub winograd_f43: bool,
    /// The Winograd weight gradient of those convolutions on images at least
    /// [`crate::WINOGRAD_WEIGHT_GRAD_MIN_SIDE`] pixels high and wide: 2.25× fewer
    /// multiplications than the direct sum, rounding within a few ulp of it. Off, every weight
    /// gradient is summed directly, as PyTorch sums it. Needs [`KernelPolicy::winograd`].
    pub winograd_weight_grad: bool,
    /// The widest vector instructions the kernels may use; they use what the CPU has up to
    /// this. [`Simd::Avx2Fma`] on an AVX-512 CPU runs an AVX2 machine's path.
    pub simd: Simd,
}

impl Default for KernelPolicy {
    /// Every kernel on.
    ///
    /// ```
    /// let p = ikd_kernels::KernelPolicy::default();
    /// assert!(p.cpu_kernels && p.winograd && p.winograd_f43 && p.winograd_weight_grad);
    /// ```
    fn default() -> Self {
        Self {
            cpu_kernels: true,
            winograd: true,
            winograd_f43: true,
            winograd_weight_grad: true,
            simd: Simd::Avx512,
        }
    }
}

/// The environment variables of [`KernelPolicy::from_env`], each with the field it turns off.
const ENV: [&str; 4] =
    ["IKD_CPU_KERNELS", "IKD_WINOGRAD", "IKD_WINOGRAD_F43", "IKD_WINOGRAD_WEIGHT_GRAD"];

impl KernelPolicy {
    /// Every kernel off: candle's own ops everywhere.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// let x = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu)?;
    /// assert!(!ikd_kernels::KernelPolicy::candle().applies(&[&x]));
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub const fn candle() -> Self {
        Self {
            cpu_kernels: false,
            winograd: false,
            winograd_f43: false,
            winograd_weight_grad: false,
            simd: Simd::Avx512,
        }
    }

    /// The default policy with each switch turned off whose environment variable is `0`:
    /// `IKD_CPU_KERNELS`, `IKD_WINOGRAD`, `IKD_WINOGRAD_F43`, `IKD_WINOGRAD_WEIGHT_GRAD`; and
    /// `IKD_SIMD` (`scalar`, `avx2` or `avx512`) caps [`KernelPolicy::simd`]. For
    /// binaries (the `ikd` command, `cargo xtask`, the benches); a library takes its policy
    /// from its caller.
    ///
    /// ```
    /// let p = ikd_kernels::KernelPolicy::from_env();
    /// assert_eq!(p.winograd, std::env::var("IKD_WINOGRAD").map_or(true, |v| v != "0"));
    /// ```
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`KernelPolicy::from_env`] with the variables read by `get`.
    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let on = |name: &str| get(name).is_none_or(|v| v != "0");
        let [cpu, wino, f43, wgrad] = ENV.map(on);
        let simd = get("IKD_SIMD").and_then(|v| Simd::parse(&v)).unwrap_or(Simd::Avx512);
        Self {
            cpu_kernels: cpu,
            winograd: wino,
            winograd_f43: f43,
            winograd_weight_grad: wgrad,
            simd,
        }
    }

    /// The policy as this CPU runs it: Winograd only with the CPU kernels and AVX2 + FMA or
    /// AVX-512F (within [`KernelPolicy::simd`]), and F(4×4, 3×3) and the Winograd weight
    /// gradient only with Winograd.
    ///
    /// ```
    /// use ikd_kernels::KernelPolicy;
    /// let p = KernelPolicy { cpu_kernels: false, ..Default::default() }.effective();
    /// assert!(!p.winograd && !p.winograd_f43 && !p.winograd_weight_grad);
    /// // where the CPU has AVX2 + FMA or AVX-512F, the default runs every path
    /// let d = KernelPolicy::default().effective();
    /// assert!(d.winograd_f43 == d.winograd && d.cpu_kernels);
    /// ```
    pub fn effective(self) -> Self {
        let simd = if self.cpu_kernels { self.simd.min(Simd::detect()) } else { Simd::Scalar };
        let winograd = self.cpu_kernels && self.winograd && simd >= crate::winograd::MIN_SIMD;
        Self {
            cpu_kernels: self.cpu_kernels,
            winograd,
            winograd_f43: winograd && self.winograd_f43,
            winograd_weight_grad: winograd && self.winograd_weight_grad,
            simd,
        }
    }

    /// Which code this policy runs on this CPU, in a few words for logs and reports: `candle`
    /// (candle's own ops), or the vector set ([`Simd::name`]) and the 3×3 convolutions'
    /// algorithm: `avx512 winograd-f4x4`, `avx2-fma winograd-f2x2`, `scalar im2col`, …
    ///
    /// ```
    /// use ikd_kernels::{KernelPolicy, Simd};
    /// assert_eq!(KernelPolicy::candle().path(), "candle");
    /// let p = KernelPolicy { winograd: false, simd: Simd::Scalar, ..Default::default() };
    /// assert_eq!(p.path(), "scalar im2col");
    /// println!("this machine: {}", KernelPolicy::default().path());
    /// ```
    pub fn path(&self) -> String {
        let p = self.effective();
        if !p.cpu_kernels {
            return "candle".into();
        }
        let conv = match (p.winograd, p.winograd_f43) {
            (false, _) => "im2col",
            (true, false) => "winograd-f2x2",
            (true, true) => "winograd-f4x4",
        };
        format!("{} {conv}", p.simd)
    }

    /// Whether the kernels handle these tensors: [`KernelPolicy::cpu_kernels`] on, all on the
    /// CPU device, all of one dtype, f32 or f64.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use ikd_kernels::KernelPolicy;
    /// let x = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu)?;
    /// assert!(KernelPolicy::default().applies(&[&x]));
    /// let h = Tensor::zeros((1, 2, 3, 3), DType::F16, &Device::Cpu)?;
    /// assert!(!KernelPolicy::default().applies(&[&h]));
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn applies(&self, ts: &[&Tensor]) -> bool {
        self.cpu_kernels
            && ts.iter().all(|t| t.device().is_cpu())
            && ts.windows(2).all(|w| w[0].dtype() == w[1].dtype())
            && ts.first().is_some_and(|t| matches!(t.dtype(), DType::F32 | DType::F64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_set_to_0_turn_their_switch_off() {
        let with = |set: &[(&str, &str)]| {
            let set: Vec<(String, String)> =
                set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            KernelPolicy::from_vars(|name| {
                set.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        };
        assert_eq!(with(&[]), KernelPolicy::default());
        assert_eq!(
            with(&[("IKD_WINOGRAD", "1"), ("IKD_CPU_KERNELS", "")]),
            KernelPolicy::default()
        );
        for (k, var) in ENV.iter().enumerate() {
            let p = with(&[(var, "0")]);
            let fields = [p.cpu_kernels, p.winograd, p.winograd_f43, p.winograd_weight_grad];
            for (j, on) in fields.into_iter().enumerate() {
                assert_eq!(on, j != k, "{var}=0: field {j}");
            }
        }
        let all: Vec<(&str, &str)> = ENV.iter().map(|v| (*v, "0")).collect();
        assert_eq!(with(&all), KernelPolicy::candle());
        assert_eq!(with(&[("IKD_SIMD", "avx2")]).simd, Simd::Avx2Fma);
        assert_eq!(with(&[("IKD_SIMD", "scalar")]).simd, Simd::Scalar);
        assert_eq!(with(&[("IKD_SIMD", "sse9")]).simd, Simd::Avx512, "unknown: no cap");
    }

    #[test]
    fn the_simd_cap_limits_the_effective_path() {
        let scalar = KernelPolicy { simd: Simd::Scalar, ..Default::default() }.effective();
        assert!(!scalar.winograd && scalar.cpu_kernels && scalar.simd == Simd::Scalar);
        let top = KernelPolicy::default().effective();
        assert_eq!(top.simd, Simd::detect());
        assert_eq!(top.winograd, Simd::detect() >= crate::winograd::MIN_SIMD);
        assert_eq!(KernelPolicy::candle().effective().simd, Simd::Scalar);
    }
}
