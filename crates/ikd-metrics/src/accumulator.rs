//! The streaming accumulator: `update` one image at a time, `merge`, `finish`.

use crate::config::{ImageScore, MetricsConfig};
use crate::key::{first_non_finite, key, value};
use crate::label::{Connectivity, MaskPixel, RunLabeller};
use crate::{Metrics, MetricsError};

/// Number of top-level buckets: keys are split by their top 16 bits.
pub(crate) const BUCKETS: usize = 1 << 16;
/// Merges keep at most this many parts before folding them together.
const MAX_PARTS: usize = 4;

/// Pixels bucketed by the top 16 bits of their key.
///
/// Defect-free pixels keep only the low 16 bits of their key (2 bytes a pixel: only their counts
/// matter); defect pixels keep `(low 16 bits) << 32 | region size` (a defect pixel adds
/// `1 / (regions · size)` to the PRO). `holes` holds, for IKD's PRO only, one
/// `key << 32 | region size` per pixel in a filled hole of a region.
pub(crate) struct Part {
    pub(crate) normal: Box<[Vec<u16>; BUCKETS]>,
    pub(crate) defect: Box<[Vec<u64>; BUCKETS]>,
    pub(crate) holes: Vec<u64>,
    len: u64,
    /// Images added to this part.
    images: u64,
}

impl Part {
    fn new() -> Self {
        fn table<T>() -> Box<[Vec<T>; BUCKETS]> {
            let v: Vec<Vec<T>> = std::iter::repeat_with(Vec::new).take(BUCKETS).collect();
            match v.into_boxed_slice().try_into() {
                Ok(table) => table,
                Err(_) => unreachable!("the table has exactly BUCKETS entries"),
            }
        }
        Part { normal: table(), defect: table(), holes: Vec::new(), len: 0, images: 0 }
    }

    fn append(&mut self, mut other: Part) {
        fn join<T>(a: &mut Vec<T>, b: &mut Vec<T>) {
            if a.is_empty() {
                std::mem::swap(a, b);
            } else {
                a.append(b);
            }
        }
        for b in 0..BUCKETS {
            join(&mut self.normal[b], &mut other.normal[b]);
            join(&mut self.defect[b], &mut other.defect[b]);
        }
        join(&mut self.holes, &mut other.holes);
        self.len += other.len;
        self.images += other.images;
    }

    /// Reserves room for `images` more images distributed like the ones of this part.
    fn reserve(&mut self, images: u64) {
        if self.images == 0 {
            return;
        }
        fn grow<T>(v: &mut Vec<T>, images: u64, seen: u64) {
            if !v.is_empty() {
                // the average per image so far, plus an eighth for images that differ
                let more = (v.len() as u64 * images).div_ceil(seen) + v.len() as u64 / 8;
                v.reserve(usize::try_from(more).unwrap_or(usize::MAX));
            }
        }
        let seen = self.images;
        for b in 0..BUCKETS {
            grow(&mut self.normal[b], images, seen);
            grow(&mut self.defect[b], images, seen);
        }
    }

    /// Pushes defect-free pixels; widens `range` (lowest key, highest key, and whether a score
    /// was NaN or infinite: checked here rather than in a pass of its own over the map).
    #[inline]
    fn push_normals(&mut self, scores: &[f32], range: &mut KeyRange) {
        let (mut lo, mut hi, mut bad) = (range.lo, range.hi, 0_u32);
        for &v in scores {
            bad |= u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
            let k = key(v);
            lo = lo.min(k);
            hi = hi.max(k);
            self.normal[(k >> 16) as usize].push(k as u16);
        }
        *range = KeyRange { lo, hi, bad: range.bad || bad != 0 };
    }

    /// Pushes the defect pixels of one region of `size` pixels; widens `range`.
    #[inline]
    fn push_defects(&mut self, scores: &[f32], size: u32, range: &mut KeyRange) {
        let (mut lo, mut hi, mut bad) = (range.lo, range.hi, 0_u32);
        for &v in scores {
            bad |= u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
            let k = key(v);
            lo = lo.min(k);
            hi = hi.max(k);
            self.defect[(k >> 16) as usize].push((u64::from(k as u16) << 32) | u64::from(size));
        }
        *range = KeyRange { lo, hi, bad: range.bad || bad != 0 };
    }

    /// Takes back the pixels of `scores` pushed last (their buckets' last entries): the undo of
    /// an image that turned out to hold a NaN or infinite score.
    fn pop(&mut self, scores: &[f32], runs: &[crate::label::Run], width: usize) {
        let mut pos = 0;
        for run in runs {
            let row = run.y as usize * width;
            let (start, end) = (row + run.x0 as usize, row + run.x1 as usize);
            for &v in &scores[pos..start] {
                self.normal[(key(v) >> 16) as usize].pop();
            }
            for &v in &scores[start..end] {
                self.defect[(key(v) >> 16) as usize].pop();
            }
            pos = end;
        }
        for &v in &scores[pos..] {
            self.normal[(key(v) >> 16) as usize].pop();
        }
    }
}

/// The keys seen in an image so far: lowest, highest, and whether a score was not finite.
#[derive(Debug, Clone, Copy)]
struct KeyRange {
    lo: u32,
    hi: u32,
    bad: bool,
}

/// Per-image facts kept for image AUROC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageRecord {
    pub(crate) score: f64,
    pub(crate) defective: bool,
}

/// Collects (anomaly map, mask) pairs one image at a time and computes the selected metrics
/// exactly at [`finish`](Self::finish).
///
/// Memory: about 2 bytes per defect-free pixel and 8 per defect pixel (plus the growth slack of
/// the buckets). Several accumulators can be filled on several threads and
/// [`merge`](Self::merge)d; the result does not depend on the order of images or on how they
/// were split.
///
/// ```
/// use ikd_metrics::{Accumulator, MetricsConfig};
///
/// let mut acc = Accumulator::new(MetricsConfig::default())?;
/// // A 3x2 map with one defect pixel scored highest, and a defect-free image.
/// acc.update(&[0.1, 0.2, 0.9, 0.3, 0.1, 0.0], &[0_u8, 0, 1, 0, 0, 0], 3, 2)?;
/// acc.update(&[0.2, 0.1, 0.1, 0.0], &[false; 4], 2, 2)?;
/// let m = acc.finish()?;
/// assert_eq!(m.pixel_auroc, Some(1.0));
/// assert_eq!(m.image_auroc, Some(1.0));
/// assert_eq!(m.au_pro_at(0.3), Some(1.0));
/// assert_eq!(m.regions, 1);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
pub struct Accumulator {
    pub(crate) config: MetricsConfig,
    pub(crate) parts: Vec<Part>,
    pub(crate) images: Vec<ImageRecord>,
    first_index: usize,
    pub(crate) normal_pixels: u64,
    pub(crate) defect_pixels: u64,
    pub(crate) regions: u64,
    pub(crate) min_key: u32,
    pub(crate) max_key: u32,
    labeller: RunLabeller,
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("config", &self.config)
            .field("images", &self.images.len())
            .field("first_index", &self.first_index)
            .field("normal_pixels", &self.normal_pixels)
            .field("defect_pixels", &self.defect_pixels)
            .field("regions", &self.regions)
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Accumulator {
    /// An empty accumulator computing the metrics selected in `config`.
    ///
    /// ```
    /// let acc = ikd_metrics::Accumulator::new(ikd_metrics::MetricsConfig::default())?;
    /// assert_eq!(acc.images(), 0);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    ///
    /// # Errors
    /// [`MetricsError::InvalidConfig`] if a setting is out of range
    /// (see [`MetricsConfig::validate`]).
    pub fn new(config: MetricsConfig) -> Result<Self, MetricsError> {
        config.validate()?;
        Ok(Accumulator {
            config,
            parts: Vec::new(),
            images: Vec::new(),
            first_index: 0,
            normal_pixels: 0,
            defect_pixels: 0,
            regions: 0,
            min_key: u32::MAX,
            max_key: 0,
            labeller: RunLabeller::default(),
        })
    }

    /// Numbers this accumulator's images from `index` in errors (for accumulators that each take
    /// a slice of a larger list).
    ///
    /// ```
    /// use ikd_metrics::{Accumulator, MetricsConfig, MetricsError};
    ///
    /// let mut acc = Accumulator::new(MetricsConfig::default())?.with_first_index(40);
    /// let err = acc.update(&[0.0; 3], &[0_u8; 4], 2, 2).unwrap_err();
    /// assert!(matches!(err, MetricsError::SizeMismatch { image: 40, .. }));
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn with_first_index(mut self, index: usize) -> Self {
        self.first_index = index;
        self
    }

    /// The configuration this accumulator computes.
    ///
    /// ```
    /// use ikd_metrics::{Accumulator, MetricsConfig};
    /// let acc = Accumulator::new(MetricsConfig::all())?;
    /// assert_eq!(acc.config(), &MetricsConfig::all());
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// Number of images added so far (merged ones included).
    ///
    /// ```
    /// let mut acc = ikd_metrics::Accumulator::new(Default::default())?;
    /// acc.update(&[0.5], &[1_u8], 1, 1)?;
    /// assert_eq!(acc.images(), 1);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn images(&self) -> usize {
        self.images.len()
    }

    /// Adds one image: its row-major anomaly map `scores` (higher = more anomalous) and its mask
    /// (nonzero / `true` = defect), both `width * height` long.
    ///
    /// On error the accumulator is left as it was.
    ///
    /// ```
    /// use ikd_metrics::{Accumulator, MetricsConfig, MetricsError};
    ///
    /// let mut acc = Accumulator::new(MetricsConfig::default())?;
    /// acc.update(&[0.9, 0.1], &[255_u8, 0], 2, 1)?;
    /// let err = acc.update(&[f32::INFINITY, 0.0], &[0_u8, 0], 2, 1).unwrap_err();
    /// assert!(matches!(err, MetricsError::NonFiniteScore { image: 1, x: 0, y: 0, .. }));
    /// assert_eq!(acc.images(), 1);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    ///
    /// # Errors
    /// [`MetricsError::SizeMismatch`], [`MetricsError::EmptyImage`],
    /// [`MetricsError::ImageTooLarge`] or [`MetricsError::NonFiniteScore`], naming the image.
    pub fn update<M: MaskPixel>(
        &mut self,
        scores: &[f32],
        mask: &[M],
        width: usize,
        height: usize,
    ) -> Result<(), MetricsError> {
        let image = self.first_index + self.images.len();
        let expected = width.checked_mul(height);
        if expected != Some(scores.len()) || expected != Some(mask.len()) {
            return Err(MetricsError::SizeMismatch {
                image,
                width,
                height,
                expected: width.saturating_mul(height),
                scores: scores.len(),
                mask: mask.len(),
            });
        }
        if scores.is_empty() {
            return Err(MetricsError::EmptyImage { image, width, height });
        }
        if u32::try_from(scores.len()).is_err() {
            return Err(MetricsError::ImageTooLarge {
                image,
                pixels: scores.len(),
                max: u32::MAX as usize,
            });
        }
        let non_finite = |p: usize| MetricsError::NonFiniteScore {
            image,
            x: p % width,
            y: p / width,
            value: scores[p].to_string(),
        };
        let regions = self.labeller.label(mask, width, height, Connectivity::Eight);
        let defect: u64 = self.labeller.sizes.iter().map(|&s| u64::from(s)).sum();
        let mut range = KeyRange { lo: u32::MAX, hi: 0, bad: false };
        if self.config.needs_pixels() {
            if self.parts.is_empty() {
                self.parts.push(Part::new());
            }
            let last = self.parts.len() - 1;
            let part = &mut self.parts[last];
            let mut pos = 0;
            for run in &self.labeller.runs {
                let row = run.y as usize * width;
                let (start, end) = (row + run.x0 as usize, row + run.x1 as usize);
                part.push_normals(&scores[pos..start], &mut range);
                let size = self.labeller.sizes[run.label as usize - 1];
                part.push_defects(&scores[start..end], size, &mut range);
                pos = end;
            }
            part.push_normals(&scores[pos..], &mut range);
            if range.bad {
                part.pop(scores, &self.labeller.runs, width);
                return Err(non_finite(first_non_finite(scores).unwrap_or_default()));
            }
            part.len += scores.len() as u64;
            part.images += 1;
            if self.config.ikd_pro.is_some() {
                let holes = &mut part.holes;
                self.labeller.for_each_hole_pixel(width, |p, size| {
                    holes.push((u64::from(key(scores[p])) << 32) | u64::from(size));
                });
            }
        } else if let Some(p) = first_non_finite(scores) {
            return Err(non_finite(p));
        }
        let (lo, hi) = (range.lo, range.hi);
        let score = match self.config.image_auroc {
            Some(ImageScore::Max) if hi >= lo => f64::from(value(hi)),
            Some(s) => s.score(scores),
            None => 0.0,
        };
        self.min_key = self.min_key.min(lo);
        self.max_key = self.max_key.max(hi);
        self.regions += regions as u64;
        self.defect_pixels += defect;
        self.normal_pixels += scores.len() as u64 - defect;
        self.images.push(ImageRecord { score, defective: regions > 0 });
        Ok(())
    }

    /// Reserves room for about `images` more images like the ones added so far (nothing before
    /// the first): when the number of images is known, the per-pixel storage grows once instead
    /// of doubling its way up (fewer copies and fresh pages; the reserved room costs address
    /// space only until it is written).
    ///
    /// ```
    /// use ikd_metrics::{Accumulator, MetricsConfig};
    ///
    /// let mut acc = Accumulator::new(MetricsConfig::default())?;
    /// acc.update(&[0.9, 0.1], &[1_u8, 0], 2, 1)?;
    /// acc.reserve(99);
    /// acc.update(&[0.2, 0.3], &[0_u8, 0], 2, 1)?;
    /// assert_eq!(acc.finish()?.pixel_auroc, Some(1.0));
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn reserve(&mut self, images: usize) {
        if let Some(part) = self.parts.last_mut() {
            part.reserve(images as u64);
        }
    }

    /// Adds everything `other` collected (its images come after this accumulator's).
    ///
    /// ```
    /// use ikd_metrics::{Accumulator, MetricsConfig};
    ///
    /// let mut a = Accumulator::new(MetricsConfig::default())?;
    /// let mut b = Accumulator::new(MetricsConfig::default())?.with_first_index(1);
    /// a.update(&[0.9, 0.2], &[1_u8, 0], 2, 1)?;
    /// b.update(&[0.1, 0.3], &[0_u8, 0], 2, 1)?;
    /// a.merge(b)?;
    /// assert_eq!(a.images(), 2);
    /// assert_eq!(a.finish()?.pixel_auroc, Some(1.0));
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    ///
    /// # Errors
    /// [`MetricsError::ConfigMismatch`] if the two configurations differ.
    pub fn merge(&mut self, other: Accumulator) -> Result<(), MetricsError> {
        if self.config != other.config {
            return Err(MetricsError::ConfigMismatch);
        }
        self.images.extend(other.images);
        self.normal_pixels += other.normal_pixels;
        self.defect_pixels += other.defect_pixels;
        self.regions += other.regions;
        self.min_key = self.min_key.min(other.min_key);
        self.max_key = self.max_key.max(other.max_key);
        self.parts.extend(other.parts);
        if self.parts.len() > MAX_PARTS {
            self.parts.sort_by_key(|p| std::cmp::Reverse(p.len));
            let rest = self.parts.split_off(1);
            for p in rest {
                self.parts[0].append(p);
            }
        }
        Ok(())
    }

    /// Computes the selected metrics.
    ///
    /// ```
    /// use ikd_metrics::{Accumulator, MetricsConfig};
    ///
    /// // One image only: image AUROC is undefined, so leave it out.
    /// let config = MetricsConfig { image_auroc: None, ..MetricsConfig::default() };
    /// let mut acc = Accumulator::new(config)?;
    /// acc.update(&[0.8, 0.8, 0.1, 0.5], &[1_u8, 0, 0, 1], 2, 2)?;
    /// let m = acc.finish()?;
    /// // Scores of defects: 0.8, 0.5; defect-free: 0.8, 0.1. One tie between classes.
    /// assert_eq!(m.pixel_auroc, Some(0.625));
    /// assert_eq!(m.regions, 1);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    ///
    /// # Errors
    /// [`MetricsError::NoImages`]; for pixel metrics [`MetricsError::NoDefectPixel`] or
    /// [`MetricsError::NoDefectFreePixel`]; for image AUROC
    /// [`MetricsError::ImageAurocUndefined`]; for IKD's PRO [`MetricsError::IkdProUndefined`].
    pub fn finish(self) -> Result<Metrics, MetricsError> {
        crate::sweep::finish(self)
    }
}
