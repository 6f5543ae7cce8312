//! A deterministic generator of inspection-like datasets in MVTec AD layout, ground-truth masks
//! included: the offline default of the project (tests, CI, the demo).
//!
//! Four texture families ([`Texture`]): woven carpet, a wire grid, wood with growth rings and
//! grain, speckled tiles with grout. Five defect kinds ([`DefectKind`]): scratch, hole,
//! contamination (foreign patch), stain (colour change) and missing structure (the texture's
//! pattern absent from a region). Every image varies in phase, orientation, brightness and noise;
//! defects have random position, size, shape and contrast, and their contrast is moderate (a
//! few tens of grey levels), so they are learnable without being trivially the brightest pixels.
//! Positions are uniform over the image, so a score that ignores the image gets an AUROC near
//! 0.5.
//!
//! Everything is a function of the configuration: image `i` of a split draws from ChaCha8 seeded
//! with `seed` on a stream derived from (texture, split, defect kind, index), so the output is
//! identical whatever the number of threads.
//!
//! ```
//! use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = SyntheticConfig { categories: vec![Texture::Grid], image_size: 32, n_train: 2,
//!     n_test_good: 1, n_test_defect: 2, seed: 1 };
//! let made = generate(&cfg, dir.path())?;
//! let cat = ikd_data::Category::open(dir.path(), "grid")?;
//! assert_eq!(cat.n_test_defect(), 2);
//! assert_eq!(made[0].counts.train, 2);
//! # Ok::<(), ikd_data::DataError>(())
//! ```

use std::f32::consts::PI;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::{GrayImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, IoContext, Result};
use crate::layout::Counts;

/// The name of the marker file written into every generated category folder.
///
/// ```
/// assert_eq!(ikd_data::synthetic::MARKER, "synthetic.json");
/// ```
pub const MARKER: &str = "synthetic.json";

/// A texture family; each generated category is one family.
///
/// ```
/// use ikd_data::synthetic::Texture;
/// assert_eq!("wood".parse::<Texture>()?, Texture::Wood);
/// assert_eq!(Texture::Tile.to_string(), "tile");
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Texture {
    /// Woven fabric: over-under threads with fibre fuzz.
    Carpet,
    /// A regular grid of metal wires on a dark background.
    Grid,
    /// Wood: curved growth rings and fine grain.
    Wood,
    /// Speckled tiles separated by light grout.
    Tile,
}

impl Texture {
    /// All families.
    ///
    /// ```
    /// assert_eq!(ikd_data::synthetic::Texture::ALL.len(), 4);
    /// ```
    pub const ALL: [Texture; 4] = [Texture::Carpet, Texture::Grid, Texture::Wood, Texture::Tile];

    /// The category (folder) name.
    ///
    /// ```
    /// assert_eq!(ikd_data::synthetic::Texture::Carpet.name(), "carpet");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Texture::Carpet => "carpet",
            Texture::Grid => "grid",
            Texture::Wood => "wood",
            Texture::Tile => "tile",
        }
    }

    fn id(self) -> u64 {
        self as u64
    }
}

impl fmt::Display for Texture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Texture {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        Texture::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| DataError::Setting {
            name: "categories",
            value: s.to_string(),
            reason: "not a synthetic texture (carpet, grid, wood or tile)".into(),
        })
    }
}

/// A kind of synthetic defect; its name is the `test/<defect>` folder.
///
/// ```
/// use ikd_data::synthetic::DefectKind;
/// assert_eq!(DefectKind::Scratch.name(), "scratch");
/// assert_eq!(DefectKind::ALL.len(), 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefectKind {
    /// A thin curved line, lighter or darker than the surface.
    Scratch,
    /// An irregular dark hole with a shaded rim.
    Hole,
    /// An irregular patch of foreign material of another colour.
    Contamination,
    /// A soft-edged colour change.
    Stain,
    /// A region where the texture's pattern is absent (smooth surface).
    Missing,
}

impl DefectKind {
    /// All kinds, in the order defective test images cycle through them.
    ///
    /// ```
    /// assert_eq!(ikd_data::synthetic::DefectKind::ALL[4].name(), "missing");
    /// ```
    pub const ALL: [DefectKind; 5] = [
        DefectKind::Scratch,
        DefectKind::Hole,
        DefectKind::Contamination,
        DefectKind::Stain,
        DefectKind::Missing,
    ];

    /// The defect folder name.
    ///
    /// ```
    /// assert_eq!(ikd_data::synthetic::DefectKind::Contamination.name(), "contamination");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            DefectKind::Scratch => "scratch",
            DefectKind::Hole => "hole",
            DefectKind::Contamination => "contamination",
            DefectKind::Stain => "stain",
            DefectKind::Missing => "missing",
        }
    }

    fn id(self) -> u64 {
        self as u64 + 1
    }
}

/// What to generate.
///
/// ```
/// let cfg = ikd_data::synthetic::SyntheticConfig::default();
/// assert_eq!((cfg.image_size, cfg.n_train, cfg.categories.len()), (256, 64, 4));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticConfig {
    /// The categories (one per texture family).
    pub categories: Vec<Texture>,
    /// Side of the square images, in pixels (at least 16).
    pub image_size: u32,
    /// Images in `train/good`.
    pub n_train: usize,
    /// Images in `test/good`.
    pub n_test_good: usize,
    /// Defective test images, spread over the defect kinds in turn.
    pub n_test_defect: usize,
    /// The seed everything derives from.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    /// All four textures, 256×256, 64 training, 20 good and 20 defective test images, seed 0.
    fn default() -> Self {
        Self {
            categories: Texture::ALL.to_vec(),
            image_size: 256,
            n_train: 64,
            n_test_good: 20,
            n_test_defect: 20,
            seed: 0,
        }
    }
}

/// A category written by [`generate`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::synthetic::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Tile],
/// #     image_size: 16, n_train: 1, n_test_good: 1, n_test_defect: 1, seed: 0 };
/// let made = ikd_data::synthetic::generate(&cfg, dir.path())?;
/// assert_eq!(made[0].name, "tile");
/// assert!(made[0].dir.join("train/good/000.png").is_file());
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedCategory {
    /// The category name.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// What it holds.
    pub counts: Counts,
}

// ---------------------------------------------------------------------------------------------
// Noise

fn mix64(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// A hash of a lattice point to `[0, 1)`.
fn hash2(ix: i32, iy: i32, seed: u64) -> f32 {
    let h = mix64(
        seed ^ u64::from(ix as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(iy as u32).wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
    );
    (h >> 40) as f32 / (1u64 << 24) as f32
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Smooth value noise in `[0, 1]`.
fn value_noise(x: f32, y: f32, seed: u64) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (x0 as i32, y0 as i32);
    let a = hash2(ix, iy, seed);
    let b = hash2(ix + 1, iy, seed);
    let c = hash2(ix, iy + 1, seed);
    let d = hash2(ix + 1, iy + 1, seed);
    lerp(lerp(a, b, sx), lerp(c, d, sx), sy)
}

/// Fractal value noise in `[0, 1]`.
fn fbm(x: f32, y: f32, seed: u64, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * value_noise(x * f, y * f, seed.wrapping_add(u64::from(o) * 7919));
        norm += amp;
        amp *= 0.5;
        f *= 2.0;
    }
    sum / norm
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

// ---------------------------------------------------------------------------------------------
// Textures

/// The per-image appearance of a texture. Coordinates are in reference units: the image spans
/// 256 units whatever its pixel size, so the look does not depend on the resolution.
struct Look {
    texture: Texture,
    phase: (f32, f32),
    cos: f32,
    sin: f32,
    gain: f32,
    seed: u64,
    centre: (f32, f32),
}

impl Look {
    fn new(texture: Texture, rng: &mut ChaCha8Rng) -> Self {
        let max_angle: f32 = match texture {
            Texture::Carpet => 4.0,
            Texture::Grid => 2.5,
            Texture::Wood => 6.0,
            Texture::Tile => 1.5,
        };
        let angle = rng.random_range(-max_angle..=max_angle).to_radians();
        Self {
            texture,
            phase: (rng.random_range(0.0..256.0), rng.random_range(0.0..256.0)),
            cos: angle.cos(),
            sin: angle.sin(),
            gain: rng.random_range(0.96..1.04),
            seed: rng.random(),
            centre: (rng.random_range(-700.0..-350.0), rng.random_range(40.0..216.0)),
        }
    }

    /// Linear RGB in `[0, 1]` at reference coordinates `(x, y)`. With `structure == false` the
    /// texture's pattern and fine detail are absent (the "missing structure" defect).
    fn shade(&self, x: f32, y: f32, structure: bool) -> [f32; 3] {
        // Rotate about the centre, then shift by the phase.
        let (cx, cy) = (x - 128.0, y - 128.0);
        let u = self.cos * cx - self.sin * cy + 128.0 + self.phase.0;
        let v = self.sin * cx + self.cos * cy + 128.0 + self.phase.1;
        let s = self.seed;
        let low = fbm(u / 70.0, v / 70.0, s ^ 0x51, 2) - 0.5;
        let (val, tint): (f32, [f32; 3]) = match self.texture {
            Texture::Carpet => {
                let p = 8.0;
                let (tu, tv) = (u / p, v / p);
                let (i, j) = (tu.floor(), tv.floor());
                let (fu, fv) = (tu - i, tv - j);
                let horizontal = (i as i64 + j as i64).rem_euclid(2) == 0;
                let profile = if horizontal { (PI * fv).sin() } else { (PI * fu).sin() };
                let fuzz = fbm(u / 2.5, v / 2.5, s ^ 0x17, 2) - 0.5;
                let val =
                    if structure { 0.52 + 0.32 * (profile - 0.64) + 0.20 * fuzz } else { 0.52 };
                (val + 0.10 * low, [1.15, 0.92, 0.78])
            }
            Texture::Grid => {
                let p = 24.0;
                let half = 1.8;
                let du = (u.rem_euclid(p)).min(p - u.rem_euclid(p));
                let dv = (v.rem_euclid(p)).min(p - v.rem_euclid(p));
                let wire = |d: f32| (1.0 - (d / half) * (d / half)).max(0.0).sqrt();
                let w = wire(du).max(wire(dv));
                let bg_fine = fbm(u / 2.0, v / 2.0, s ^ 0x23, 2) - 0.5;
                let val = if structure {
                    0.20 + 0.06 * bg_fine + w * (0.50 + 0.08 * bg_fine)
                } else {
                    0.20
                };
                (val + 0.08 * low, [0.98, 1.0, 1.03])
            }
            Texture::Wood => {
                let (dx, dy) = (u - self.centre.0 - self.phase.0, v - self.centre.1 - self.phase.1);
                let r = (dx * dx + dy * dy).sqrt() + 14.0 * fbm(u / 45.0, v / 45.0, s ^ 0x31, 3);
                let ring = 0.5 + 0.5 * (2.0 * PI * r / 17.0).sin();
                let ring = ring * ring;
                let grain = fbm(u / 1.5, v / 14.0, s ^ 0x37, 2) - 0.5;
                let t =
                    if structure { 0.30 + 0.45 * ring + 0.25 * grain } else { 0.30 + 0.45 * 0.375 };
                let light = [0.86, 0.67, 0.46];
                let dark = [0.46, 0.30, 0.16];
                let t = (t + 0.15 * low).clamp(0.0, 1.0);
                let c = [
                    lerp(light[0], dark[0], t),
                    lerp(light[1], dark[1], t),
                    lerp(light[2], dark[2], t),
                ];
                return c.map(|x| (x * self.gain).clamp(0.0, 1.0));
            }
            Texture::Tile => {
                let p = 64.0;
                let g = 4.0;
                let (tu, tv) = (u / p, v / p);
                let (i, j) = (tu.floor(), tv.floor());
                let (fu, fv) = ((tu - i) * p, (tv - j) * p);
                let grout_d = fu.min(fv).min(p - fu).min(p - fv);
                let tile_tint = hash2(i as i32, j as i32, s ^ 0x41) - 0.5;
                let speck = fbm(u / 1.3, v / 1.3, s ^ 0x43, 2);
                let speck =
                    -0.30 * smoothstep(0.62, 0.80, speck) + 0.10 * smoothstep(0.30, 0.15, speck);
                let val = if structure {
                    let tile = 0.58 + 0.06 * tile_tint + speck;
                    let grout = 0.80 + 0.04 * (fbm(u / 3.0, v / 3.0, s ^ 0x47, 1) - 0.5);
                    lerp(grout, tile, smoothstep(g * 0.5, g, grout_d))
                } else {
                    0.58
                };
                (val + 0.06 * low, [0.92, 1.0, 0.96])
            }
        };
        let v = val * self.gain;
        [
            (v * tint[0]).clamp(0.0, 1.0),
            (v * tint[1]).clamp(0.0, 1.0),
            (v * tint[2]).clamp(0.0, 1.0),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Images and defects

struct Canvas {
    size: u32,
    /// Pixels per reference unit.
    scale: f32,
    rgb: Vec<[f32; 3]>,
    mask: Vec<bool>,
}

impl Canvas {
    fn idx(&self, x: u32, y: u32) -> usize {
        (y * self.size + x) as usize
    }
    /// Reference coordinates of a pixel centre.
    fn refc(&self, x: u32, y: u32) -> (f32, f32) {
        ((x as f32 + 0.5) / self.scale, (y as f32 + 0.5) / self.scale)
    }
}

fn render_good(look: &Look, size: u32) -> Canvas {
    let scale = size as f32 / 256.0;
    let mut c = Canvas {
        size,
        scale,
        rgb: Vec::with_capacity((size * size) as usize),
        mask: vec![false; (size * size) as usize],
    };
    for y in 0..size {
        for x in 0..size {
            let (u, v) = c.refc(x, y);
            c.rgb.push(look.shade(u, v, true));
        }
    }
    c
}

/// An irregular closed shape: radius `r0·(1 + Σ a_k sin(kθ + φ_k))`.
struct Blob {
    cx: f32,
    cy: f32,
    r0: f32,
    harmonics: Vec<(f32, f32, f32)>,
    stretch: f32,
    cos: f32,
    sin: f32,
}

impl Blob {
    fn random(rng: &mut ChaCha8Rng, r_range: (f32, f32), min_r: f32) -> Self {
        let r0 = rng.random_range(r_range.0..r_range.1).max(min_r);
        // Centres nearly uniform over the image (a defect may touch the border), so that the
        // defect probability hardly depends on the position.
        let m = (0.5 * r0).min(127.0);
        let cx = rng.random_range(m..(256.0 - m));
        let cy = rng.random_range(m..(256.0 - m));
        let harmonics = (2..6)
            .map(|k| {
                (
                    k as f32,
                    rng.random_range(0.0..0.22) / (k as f32 - 1.0),
                    rng.random_range(0.0..2.0 * PI),
                )
            })
            .collect();
        let angle: f32 = rng.random_range(0.0..PI);
        Self {
            cx,
            cy,
            r0,
            harmonics,
            stretch: rng.random_range(0.6..1.0),
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// Signed distance-like value: negative inside, in reference units.
    fn sdf(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (a, b) = (self.cos * dx + self.sin * dy, -self.sin * dx + self.cos * dy);
        let b = b / self.stretch;
        let rho = (a * a + b * b).sqrt();
        let theta = b.atan2(a);
        let r = self.r0
            * (1.0
                + self
                    .harmonics
                    .iter()
                    .map(|&(k, amp, ph)| amp * (k * theta + ph).sin())
                    .sum::<f32>());
        rho - r
    }

    fn bbox(&self, margin: f32) -> (f32, f32, f32, f32) {
        let r = self.r0 * 1.6 + margin;
        (self.cx - r, self.cy - r, self.cx + r, self.cy + r)
    }
}

/// Pixel range covering a reference-unit box, clamped to the image.
fn pixel_range(c: &Canvas, (x0, y0, x1, y1): (f32, f32, f32, f32)) -> (u32, u32, u32, u32) {
    let s = c.size as f32;
    let px = |v: f32| (v * c.scale).clamp(0.0, s - 1.0) as u32;
    (px(x0), px(y0), px(x1), px(y1))
}

fn apply_defect(c: &mut Canvas, look: &Look, kind: DefectKind, rng: &mut ChaCha8Rng) {
    // The smallest defect feature is at least ~1.5 pixels whatever the image size.
    let min_r = 1.6 / c.scale;
    match kind {
        DefectKind::Scratch => {
            let len = rng.random_range(60.0..150.0f32);
            let angle = rng.random_range(0.0..2.0 * PI);
            let (dx, dy) = (angle.cos() * len / 2.0, angle.sin() * len / 2.0);
            // The centre anywhere: a scratch may run off the image.
            let (cx, cy) = (rng.random_range(0.0..256.0), rng.random_range(0.0..256.0));
            let bend = rng.random_range(-0.35..0.35) * len;
            let (p0, p2) = ((cx - dx, cy - dy), (cx + dx, cy + dy));
            let p1 = (cx - angle.sin() * bend, cy + angle.cos() * bend);
            let half_w = (rng.random_range(0.9..1.8f32)).max(0.75 / c.scale);
            let delta =
                rng.random_range(0.16..0.28) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let steps = (len * c.scale * 2.0).ceil().max(8.0) as usize;
            let r_px = half_w * c.scale;
            let mut hit = vec![false; c.mask.len()];
            for k in 0..=steps {
                let t = k as f32 / steps as f32;
                let q = |a: f32, b: f32, cc: f32| {
                    (1.0 - t) * (1.0 - t) * a + 2.0 * (1.0 - t) * t * b + t * t * cc
                };
                let (qx, qy) = (q(p0.0, p1.0, p2.0) * c.scale, q(p0.1, p1.1, p2.1) * c.scale);
                let (x0, x1) = ((qx - r_px - 1.0).floor(), (qx + r_px + 1.0).ceil());
                let (y0, y1) = ((qy - r_px - 1.0).floor(), (qy + r_px + 1.0).ceil());
                for py in (y0.max(0.0) as u32)..(y1.min(c.size as f32) as u32) {
                    for px in (x0.max(0.0) as u32)..(x1.min(c.size as f32) as u32) {
                        let (ex, ey) = (px as f32 + 0.5 - qx, py as f32 + 0.5 - qy);
                        if ex * ex + ey * ey <= r_px * r_px {
                            let i = c.idx(px, py);
                            hit[i] = true;
                        }
                    }
                }
            }
            for (i, h) in hit.iter().enumerate() {
                if *h {
                    c.mask[i] = true;
                    let jitter = 0.04 * (hash2(i as i32, 7, look.seed) - 0.5);
                    c.rgb[i] = c.rgb[i].map(|v| (v + delta + jitter).clamp(0.0, 1.0));
                }
            }
        }
        DefectKind::Hole | DefectKind::Contamination => {
            let blob = Blob::random(rng, (7.0, 22.0), min_r);
            let foreign = [
                rng.random_range(0.15..0.75f32),
                rng.random_range(0.15..0.75f32),
                rng.random_range(0.15..0.75f32),
            ];
            let depth = rng.random_range(0.10..0.22f32);
            let (x0, y0, x1, y1) = pixel_range(c, blob.bbox(4.0));
            for py in y0..=y1 {
                for px in x0..=x1 {
                    let (u, v) = c.refc(px, py);
                    let d = blob.sdf(u, v);
                    let i = c.idx(px, py);
                    let n = fbm(u / 3.0, v / 3.0, look.seed ^ 0x99, 2) - 0.5;
                    if d <= 0.0 {
                        c.mask[i] = true;
                        c.rgb[i] = if kind == DefectKind::Hole {
                            // Dark inside, shading towards the rim.
                            let rim = smoothstep(-4.0, 0.0, d);
                            c.rgb[i].map(|x| (x * (depth + 0.35 * rim) + 0.06 * n).clamp(0.0, 1.0))
                        } else {
                            let keep = 0.25;
                            let mut out = [0.0; 3];
                            for ch in 0..3 {
                                out[ch] =
                                    (keep * c.rgb[i][ch] + (1.0 - keep) * foreign[ch] + 0.12 * n)
                                        .clamp(0.0, 1.0);
                            }
                            out
                        };
                    } else if kind == DefectKind::Hole && d < 2.5 {
                        // A slightly raised, lighter lip just outside (not annotated, as in MVTec).
                        let lip = 0.06 * (1.0 - d / 2.5);
                        c.rgb[i] = c.rgb[i].map(|x| (x + lip).clamp(0.0, 1.0));
                    }
                }
            }
        }
        DefectKind::Stain => {
            let blob = Blob::random(rng, (12.0, 32.0), min_r);
            let tints =
                [[0.72, 0.55, 0.35], [0.55, 0.70, 0.95], [1.0, 0.92, 0.45], [0.55, 0.55, 0.55]];
            let tint = tints[rng.random_range(0..tints.len())];
            let strength = rng.random_range(0.55..0.85f32);
            let soft = rng.random_range(2.0..6.0f32);
            let (x0, y0, x1, y1) = pixel_range(c, blob.bbox(soft));
            for py in y0..=y1 {
                for px in x0..=x1 {
                    let (u, v) = c.refc(px, py);
                    let a = smoothstep(soft, -soft, blob.sdf(u, v));
                    if a <= 0.0 {
                        continue;
                    }
                    let i = c.idx(px, py);
                    let alpha = strength * a;
                    for (x, t) in c.rgb[i].iter_mut().zip(tint) {
                        *x = (*x * (1.0 - alpha) + *x * t * alpha).clamp(0.0, 1.0);
                    }
                    if a >= 0.5 {
                        c.mask[i] = true;
                    }
                }
            }
        }
        DefectKind::Missing => {
            let blob = Blob::random(rng, (12.0, 28.0), min_r);
            let (x0, y0, x1, y1) = pixel_range(c, blob.bbox(1.0));
            for py in y0..=y1 {
                for px in x0..=x1 {
                    let (u, v) = c.refc(px, py);
                    if blob.sdf(u, v) <= 0.0 {
                        let i = c.idx(px, py);
                        c.mask[i] = true;
                        c.rgb[i] = look.shade(u, v, false);
                    }
                }
            }
        }
    }
}

/// Quantises to 8 bit with a little sensor noise.
fn finish(c: &Canvas, seed: u64) -> (RgbImage, GrayImage) {
    let size = c.size;
    let rgb = RgbImage::from_fn(size, size, |x, y| {
        let i = c.idx(x, y);
        let n = 0.012 * (hash2(x as i32, y as i32, seed ^ 0x5eed) - 0.5);
        image::Rgb(c.rgb[i].map(|v| ((v + n).clamp(0.0, 1.0) * 255.0).round() as u8))
    });
    let mask = GrayImage::from_fn(size, size, |x, y| {
        image::Luma([if c.mask[c.idx(x, y)] { 255 } else { 0 }])
    });
    (rgb, mask)
}

fn rng_for(
    seed: u64,
    texture: Texture,
    split: u64,
    kind: Option<DefectKind>,
    index: usize,
) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kind_id = kind.map(DefectKind::id).unwrap_or(0);
    rng.set_stream((texture.id() << 48) | (split << 40) | (kind_id << 32) | index as u64);
    rng
}

/// Renders one image (and, for a defect, its mask) exactly as [`generate`] would write it.
///
/// `split` is 0 for `train/good`, 1 for `test/good`, 2 for defective test images; `index` counts
/// within the split (for defects: within the defect kind's folder).
///
/// ```
/// use ikd_data::synthetic::{render, DefectKind, Texture};
/// let (img, mask) = render(Texture::Wood, 32, 0, 2, Some(DefectKind::Stain), 0);
/// assert_eq!(img.dimensions(), (32, 32));
/// assert!(mask.unwrap().pixels().any(|p| p.0[0] == 255));
/// ```
pub fn render(
    texture: Texture,
    image_size: u32,
    seed: u64,
    split: u64,
    defect: Option<DefectKind>,
    index: usize,
) -> (RgbImage, Option<GrayImage>) {
    let mut rng = rng_for(seed, texture, split, defect, index);
    let look = Look::new(texture, &mut rng);
    let base = render_good(&look, image_size);
    match defect {
        None => (finish(&base, look.seed).0, None),
        Some(kind) => {
            // Retry (deterministically) in the rare case a defect falls on no pixel centre.
            for _ in 0..16 {
                let mut c = Canvas {
                    size: base.size,
                    scale: base.scale,
                    rgb: base.rgb.clone(),
                    mask: base.mask.clone(),
                };
                apply_defect(&mut c, &look, kind, &mut rng);
                if c.mask.iter().any(|&m| m) {
                    let (img, mask) = finish(&c, look.seed);
                    return (img, Some(mask));
                }
            }
            // Unreachable in practice (defects are at least ~1.5 px); mark the centre so that a
            // defective image always has a non-empty mask.
            let mut c = base;
            let centre = c.idx(c.size / 2, c.size / 2);
            c.mask[centre] = true;
            c.rgb[centre] = [0.0; 3];
            let (img, mask) = finish(&c, look.seed);
            (img, Some(mask))
        }
    }
}

struct Job {
    texture: Texture,
    split: u64,
    defect: Option<DefectKind>,
    index: usize,
    image: PathBuf,
    mask: Option<PathBuf>,
}

fn save_png(path: &Path, write: impl FnOnce(&Path) -> image::ImageResult<()>) -> Result<()> {
    write(path).map_err(|e| match e {
        image::ImageError::IoError(source) => DataError::Io { path: path.to_path_buf(), source },
        other => DataError::Encode { path: path.to_path_buf(), source: other },
    })
}

/// Writes the configured categories under `out_root` in MVTec AD layout, in parallel.
///
/// Each category is written into a staging folder ([`ikd_io::StagedDir`]) and renamed into place
/// when complete,
/// with a [`MARKER`] file holding the configuration. An existing category folder is replaced
/// only if it carries that marker (i.e. was generated); any other folder is left alone and
/// reported as [`DataError::AlreadyExists`].
///
/// ```
/// use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
/// let dir = tempfile::tempdir().unwrap();
/// let cfg = SyntheticConfig { categories: vec![Texture::Carpet, Texture::Tile], image_size: 16,
///     n_train: 2, n_test_good: 1, n_test_defect: 5, seed: 3 };
/// let made = generate(&cfg, dir.path())?;
/// assert_eq!(made.len(), 2);
/// assert_eq!(ikd_data::list_categories(dir.path())?, vec!["carpet", "tile"]);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn generate(
    cfg: &SyntheticConfig,
    out_root: impl AsRef<Path>,
) -> Result<Vec<GeneratedCategory>> {
    let out_root = out_root.as_ref();
    if cfg.image_size < 16 {
        return Err(DataError::Setting {
            name: "image_size",
            value: cfg.image_size.to_string(),
            reason: "a synthetic image is at least 16 pixels wide".into(),
        });
    }
    if cfg.n_train == 0 {
        return Err(DataError::Setting {
            name: "n_train",
            value: "0".into(),
            reason: "a synthetic category needs at least 1 training image".into(),
        });
    }
    if cfg.categories.is_empty() {
        return Err(DataError::Setting {
            name: "categories",
            value: "[]".into(),
            reason: "at least one synthetic category".into(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = cfg.categories.iter().find(|t| !seen.insert(**t)) {
        return Err(DataError::Setting {
            name: "categories",
            value: dup.to_string(),
            reason: "requested twice".into(),
        });
    }
    for t in &cfg.categories {
        let final_dir = out_root.join(t.name());
        if final_dir.exists() && !final_dir.join(MARKER).is_file() {
            return Err(DataError::AlreadyExists { path: final_dir });
        }
    }
    fs::create_dir_all(out_root).at(out_root)?;

    let mut jobs = Vec::new();
    let mut staged = Vec::new();
    for &t in &cfg.categories {
        let stage = ikd_io::StagedDir::new(out_root.join(t.name()))?;
        let staging = stage.path().to_path_buf();
        let mk = |p: PathBuf| fs::create_dir_all(&p).at(&p);
        mk(staging.join("train/good"))?;
        for i in 0..cfg.n_train {
            jobs.push(Job {
                texture: t,
                split: 0,
                defect: None,
                index: i,
                image: staging.join(format!("train/good/{i:03}.png")),
                mask: None,
            });
        }
        if cfg.n_test_good + cfg.n_test_defect > 0 {
            mk(staging.join("test/good"))?;
        }
        for i in 0..cfg.n_test_good {
            jobs.push(Job {
                texture: t,
                split: 1,
                defect: None,
                index: i,
                image: staging.join(format!("test/good/{i:03}.png")),
                mask: None,
            });
        }
        let mut per_kind = [0usize; 5];
        for k in 0..cfg.n_test_defect {
            let kind = DefectKind::ALL[k % DefectKind::ALL.len()];
            let slot = &mut per_kind[k % DefectKind::ALL.len()];
            let i = *slot;
            *slot += 1;
            if i == 0 {
                mk(staging.join("test").join(kind.name()))?;
                mk(staging.join("ground_truth").join(kind.name()))?;
            }
            jobs.push(Job {
                texture: t,
                split: 2,
                defect: Some(kind),
                index: i,
                image: staging.join(format!("test/{}/{i:03}.png", kind.name())),
                mask: Some(staging.join(format!("ground_truth/{}/{i:03}_mask.png", kind.name()))),
            });
        }
        staged.push((t, stage));
    }

    let written = jobs.par_iter().try_for_each(|job| {
        let (img, mask) =
            render(job.texture, cfg.image_size, cfg.seed, job.split, job.defect, job.index);
        save_png(&job.image, |p| img.save_with_format(p, image::ImageFormat::Png))?;
        if let (Some(mp), Some(m)) = (&job.mask, mask) {
            save_png(mp, |p| m.save_with_format(p, image::ImageFormat::Png))?;
        }
        Ok::<(), DataError>(())
    });
    // on an error, dropping `staged` removes every staging folder
    written?;

    let counts =
        Counts { train: cfg.n_train, test_good: cfg.n_test_good, test_defect: cfg.n_test_defect };
    let mut out = Vec::new();
    for (t, stage) in staged {
        let marker = serde_json::json!({
            "generator": "ikd-data synthetic",
            "category": t.name(),
            "config": cfg,
            "counts": counts,
        });
        let text = serde_json::to_string_pretty(&marker)
            .map_err(|e| DataError::Internal(format!("marker: {e}")))?;
        ikd_io::atomic_write(&stage.path().join(MARKER), text.as_bytes())?;
        // an existing folder here carries the marker (checked above): a generated one, replaced
        let final_dir = stage.commit_replacing()?;
        out.push(GeneratedCategory { name: t.name().to_string(), dir: final_dir, counts });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG that cannot be written is a write error (or an I/O error) naming the file, never
    /// "cannot read image".
    #[test]
    fn a_failed_png_write_is_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f32.png");
        // PNG has no 32-bit float pixels: the encoder refuses.
        let img = image::DynamicImage::ImageRgba32F(image::Rgba32FImage::new(2, 2));
        let e = save_png(&p, |p| img.save_with_format(p, image::ImageFormat::Png)).unwrap_err();
        assert!(matches!(e, DataError::Encode { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{}: cannot write image", p.display())), "{msg}");
        // A folder where the file should go: the system's error, with the path.
        let small = image::GrayImage::new(2, 2);
        let e = save_png(dir.path(), |p| small.save_with_format(p, image::ImageFormat::Png))
            .unwrap_err();
        assert!(matches!(e, DataError::Io { .. }), "{e:?}");
        assert!(!e.to_string().contains("cannot read"), "{e}");
    }

    /// Each defect changes the pixels it annotates clearly (learnable) but not to saturation, and
    /// leaves the rest of the image (almost) alone.
    #[test]
    fn defects_change_the_annotated_pixels() {
        for texture in Texture::ALL {
            for kind in DefectKind::ALL {
                let (mut sum_in, mut n_in, mut sum_out, mut n_out) = (0f64, 0usize, 0f64, 0usize);
                for i in 0..8 {
                    let mut rng = rng_for(3, texture, 2, Some(kind), i);
                    let look = Look::new(texture, &mut rng);
                    let base = render_good(&look, 64);
                    let mut c = Canvas {
                        size: base.size,
                        scale: base.scale,
                        rgb: base.rgb.clone(),
                        mask: base.mask.clone(),
                    };
                    apply_defect(&mut c, &look, kind, &mut rng);
                    for k in 0..c.rgb.len() {
                        let d: f32 =
                            (0..3).map(|ch| (c.rgb[k][ch] - base.rgb[k][ch]).abs()).sum::<f32>()
                                / 3.0;
                        if c.mask[k] {
                            sum_in += f64::from(d);
                            n_in += 1;
                        } else {
                            sum_out += f64::from(d);
                            n_out += 1;
                        }
                    }
                }
                let (inside, outside) = (sum_in / n_in as f64, sum_out / n_out as f64);
                eprintln!(
                    "{texture}/{}: mean change inside {inside:.3}, outside {outside:.5}",
                    kind.name()
                );
                assert!(n_in > 0, "{texture}/{}: nothing annotated", kind.name());
                assert!(
                    (0.03..0.5).contains(&inside),
                    "{texture}/{}: mean change inside {inside:.3}",
                    kind.name()
                );
                assert!(
                    outside < 0.004,
                    "{texture}/{}: mean change outside {outside:.4}",
                    kind.name()
                );
            }
        }
    }
}
