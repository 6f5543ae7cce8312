//! Seeded, reproducible initialisation of a network's variables.
//!
//! candle draws random initial values from an unseeded generator, so two runs with the same
//! `--seed` would start from different students. [`seeded_init`] overwrites every variable with
//! timm's HRNet initialisation drawn from ChaCha8 seeded with the run's seed: convolution weights
//! from N(0, 2 / fan_out) (kaiming normal, `mode='fan_out'`, ReLU gain), BatchNorm weight 1 and bias
//! 0, running mean 0 and running variance 1, other biases 0.

use candle_core::{Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;

/// Overwrites every variable in `vars` (name, variable; the order does not matter) with timm's
/// initialisation drawn from a generator seeded with `seed`. Each variable gets its own stream
/// derived from its name, so adding a variable does not change the others.
///
/// ```
/// use candle_core::{DType, Device, Var};
/// let w = Var::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
/// ikd::init::seeded_init(&[("conv1.weight".to_string(), w.clone())], 7).unwrap();
/// let s = w.as_tensor().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
/// assert!(s > 0.0);
/// ```
pub fn seeded_init(vars: &[(String, Var)], seed: u64) -> Result<()> {
    for (name, var) in vars {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let leaf = name.rsplit('.').next().unwrap_or("");
        let values: Vec<f32> = match (leaf, dims.len()) {
            ("weight", 4) => {
                let fan_out = (dims[0] * dims[2] * dims[3]) as f64;
                let std = (2.0 / fan_out).sqrt();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(fnv1a(name));
                (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
            }
            ("weight", _) | ("running_var", _) => vec![1.0; n],
            _ => vec![0.0; n],
        };
        let t = Tensor::from_vec(values, dims.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// A standard normal draw (Box–Muller), independent of any library's sampling algorithm.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
