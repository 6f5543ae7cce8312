//! Order-preserving mapping of finite `f32` scores to `u32` keys.

/// Maps a finite score to a key such that `a < b` ⇔ `key(a) < key(b)` and `a == b` ⇔
/// `key(a) == key(b)` (`-0.0` and `+0.0` share a key).
#[inline(always)]
pub(crate) fn key(v: f32) -> u32 {
    // `-0.0 + 0.0 == +0.0`: one key for both zeros.
    let b = (v + 0.0).to_bits();
    b ^ (((b as i32 >> 31) as u32) | 0x8000_0000)
}

/// The score of a key made by [`key`].
#[inline]
pub(crate) fn value(k: u32) -> f32 {
    if k & 0x8000_0000 != 0 {
        f32::from_bits(k & 0x7fff_ffff)
    } else {
        f32::from_bits(!k)
    }
}

/// Index of the first NaN or infinite value, if any.
pub(crate) fn first_non_finite(scores: &[f32]) -> Option<usize> {
    const CHUNK: usize = 256;
    for (c, chunk) in scores.chunks(CHUNK).enumerate() {
        let bad = chunk
            .iter()
            .fold(0_u32, |acc, v| acc | u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000));
        if bad != 0 {
            return chunk.iter().position(|v| !v.is_finite()).map(|p| c * CHUNK + p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order_and_round_trip() {
        let vals = [
            f32::MIN,
            -1e30,
            -1.5,
            -1.0,
            -f32::MIN_POSITIVE,
            -1e-45,
            0.0,
            1e-45,
            f32::MIN_POSITIVE,
            0.5,
            1.0,
            3.0e38,
            f32::MAX,
        ];
        for w in vals.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} {}", w[0], w[1]);
        }
        for v in vals {
            assert_eq!(value(key(v)), v);
        }
        assert_eq!(key(-0.0), key(0.0));
        assert_eq!(first_non_finite(&[0.0; 1000]), None);
        let mut v = vec![0.0_f32; 1000];
        v[700] = f32::NEG_INFINITY;
        v[900] = f32::NAN;
        assert_eq!(first_non_finite(&v), Some(700));
    }
}
