//! An in-memory cache of a category's decoded, resized images and a batch iterator over it.
//!
//! Decoding and resizing run once, in parallel (rayon), with a progress bar; an epoch then costs
//! no decoding. Batches are candle tensors `(N, 3, H, W)` (normalised images) and, for the test
//! split, `(N, 1, H, W)` masks of 0 and 1 (all zero for defect-free images).
//!
//! Shuffling is a function of `(seed, epoch)` only ([`epoch_permutation`]), so a trainer resumes
//! exactly by saving [`Order`] and the index of the next batch ([`Batches::position`]) and calling
//! [`Batches::seek`] after a restart.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{GrayImage, RgbImage};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::image_io::{load_image, load_mask};
use crate::layout::{Category, GOOD};
use crate::transform::{normalize_chw_into, Transform};

/// The order in which [`Dataset::batches`] visits the samples.
///
/// ```
/// use ikd_data::Order;
/// let o = Order::Shuffled { seed: 7, epoch: 3 };
/// assert_eq!(o.permutation(4).len(), 4);
/// assert_eq!(Order::Sequential.permutation(3), vec![0, 1, 2]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Order {
    /// Index order (sorted paths).
    Sequential,
    /// The permutation [`epoch_permutation`]`(n, seed, epoch)`.
    Shuffled {
        /// The run's seed.
        seed: u64,
        /// The epoch (each epoch gets its own permutation).
        epoch: u64,
    },
}

impl Order {
    /// The visiting order of `n` samples.
    ///
    /// ```
    /// let p = ikd_data::Order::Shuffled { seed: 1, epoch: 0 }.permutation(10);
    /// let mut s = p.clone();
    /// s.sort();
    /// assert_eq!(s, (0..10).collect::<Vec<_>>());
    /// ```
    pub fn permutation(&self, n: usize) -> Vec<usize> {
        match *self {
            Order::Sequential => (0..n).collect(),
            Order::Shuffled { seed, epoch } => epoch_permutation(n, seed, epoch),
        }
    }
}

/// A uniform integer in `0..bound` (`bound > 0`) by rejection sampling, so the result does not
/// depend on any library's sampling algorithm.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let v = rng.next_u64();
        if v < zone {
            return v % bound;
        }
    }
}

/// The permutation of `0..n` for one epoch: a Fisher–Yates shuffle driven by ChaCha8 seeded with
/// `seed`, on stream `epoch`. Stable across platforms and releases of this crate's dependencies.
///
/// ```
/// let a = ikd_data::epoch_permutation(8, 42, 0);
/// assert_eq!(a, ikd_data::epoch_permutation(8, 42, 0));
/// assert_ne!(a, ikd_data::epoch_permutation(8, 42, 1));
/// ```
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// One batch.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
/// # let data = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
/// for batch in data.batches(2, ikd_data::Order::Sequential, &candle_core::Device::Cpu)? {
///     let batch = batch?;
///     assert_eq!(batch.images.dim(0)?, batch.indices.len());
/// }
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Batch {
    /// Normalised images, `(N, 3, H, W)` `f32`.
    pub images: Tensor,
    /// Masks of 0 and 1, `(N, 1, H, W)` `f32`; `Some` for the test split only.
    pub masks: Option<Tensor>,
    /// Per sample: anomalous or not.
    pub labels: Vec<bool>,
    /// Per sample: its index in the [`Dataset`].
    pub indices: Vec<usize>,
}

/// Which part of a category a [`Dataset`] holds.
///
/// ```
/// assert_ne!(ikd_data::Split::Train, ikd_data::Split::Test);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Split {
    /// `train/good`.
    Train,
    /// `test/*` with the masks.
    Test,
    /// Arbitrary image files (prediction).
    Files,
}

/// The decoded, transformed images (and masks) of a split, held in memory.
///
/// ```
/// use ikd_data::{Category, Dataset, Order, Transform};
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// let cat = Category::open(dir.path(), "carpet")?; // e.g. data/mvtec_anomaly_detection, bottle
/// let train = Dataset::train(&cat, &Transform::paper(), false)?;
/// for epoch in 0..2 {
///     for batch in train.batches(2, Order::Shuffled { seed: 0, epoch }, &candle_core::Device::Cpu)? {
///         let x = batch?.images;
///         assert_eq!(x.dims(), &[2, 3, 256, 256]);
///     }
/// }
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dataset {
    split: Split,
    transform: Transform,
    paths: Vec<PathBuf>,
    defects: Vec<String>,
    labels: Vec<bool>,
    images: Vec<RgbImage>,
    /// Test split only: one entry per sample, `None` for defect-free samples.
    masks: Option<Vec<Option<GrayImage>>>,
}

fn load_prepared(path: &Path, t: &Transform) -> Result<(RgbImage, (u32, u32))> {
    let img = load_image(path)?;
    let dims = (img.width(), img.height());
    Ok((t.prepare_image(&img)?, dims))
}

impl Dataset {
    /// Decodes and transforms a category's training images.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// let train = ikd_data::Dataset::train(&cat, &ikd_data::Transform::paper(), false)?;
    /// assert_eq!(train.len(), cat.train.len());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn train(category: &Category, transform: &Transform, progress: bool) -> Result<Self> {
        let msg = format!("{} train", category.name);
        let mut d = Self::from_files(&category.train, transform, progress, msg)?;
        d.split = Split::Train;
        Ok(d)
    }

    /// Decodes and transforms arbitrary image files (no masks, all labelled defect-free), e.g.
    /// for prediction.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let files = vec![dir.path().join("carpet/test/good/000.png")];
    /// let d = ikd_data::Dataset::files(&files, &ikd_data::Transform::paper(), false)?;
    /// assert_eq!(d.image(0).dimensions(), (256, 256));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn files(paths: &[PathBuf], transform: &Transform, progress: bool) -> Result<Self> {
        Self::from_files(paths, transform, progress, "images".into())
    }

    fn from_files(
        paths: &[PathBuf],
        transform: &Transform,
        progress: bool,
        msg: String,
    ) -> Result<Self> {
        let pb = ikd_io::progress::bar(paths.len() as u64, &msg, progress);
        let images = paths
            .par_iter()
            .map(|p| {
                let r = load_prepared(p, transform).map(|(img, _)| img);
                pb.inc(1);
                r
            })
            .collect::<Result<Vec<_>>>()?;
        pb.finish_and_clear();
        Ok(Self {
            split: Split::Files,
            transform: *transform,
            paths: paths.to_vec(),
            defects: vec![GOOD.to_string(); paths.len()],
            labels: vec![false; paths.len()],
            images,
            masks: None,
        })
    }

    /// Decodes and transforms a category's test images and masks.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// let test = ikd_data::Dataset::test(&cat, &ikd_data::Transform::paper(), false)?;
    /// assert_eq!(test.len(), cat.test.len());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn test(category: &Category, transform: &Transform, progress: bool) -> Result<Self> {
        let pb = ikd_io::progress::bar(
            category.test.len() as u64,
            &format!("{} test", category.name),
            progress,
        );
        let loaded = category
            .test
            .par_iter()
            .map(|item| {
                let (img, (w, h)) = load_prepared(&item.path, transform)?;
                let mask = match &item.mask {
                    None => None,
                    Some(mp) => {
                        let m = load_mask(mp)?;
                        if m.dimensions() != (w, h) {
                            return Err(DataError::MaskSizeMismatch {
                                mask: mp.clone(),
                                image: item.path.clone(),
                                mask_w: m.width(),
                                mask_h: m.height(),
                                image_w: w,
                                image_h: h,
                            });
                        }
                        Some(transform.prepare_mask(&m)?)
                    }
                };
                pb.inc(1);
                Ok((img, mask))
            })
            .collect::<Result<Vec<_>>>()?;
        pb.finish_and_clear();
        let (images, masks): (Vec<_>, Vec<_>) = loaded.into_iter().unzip();
        Ok(Self {
            split: Split::Test,
            transform: *transform,
            paths: category.test.iter().map(|i| i.path.clone()).collect(),
            defects: category.test.iter().map(|i| i.defect.clone()).collect(),
            labels: category.test.iter().map(|i| i.label).collect(),
            images,
            masks: Some(masks),
        })
    }

    /// The number of samples.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// println!("{} samples", d.len());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the dataset holds no sample.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// assert!(!d.is_empty());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Which split this is.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// assert_eq!(d.split(), ikd_data::Split::Test);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn split(&self) -> Split {
        self.split
    }

    /// The transform the images went through.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// assert_eq!(d.transform().image_size, 16);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn transform(&self) -> Transform {
        self.transform
    }

    /// The source file of sample `i`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// println!("{}", d.path(0).display());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn path(&self, i: usize) -> &Path {
        &self.paths[i]
    }

    /// The defect type of sample `i` (`good` for defect-free and non-test samples).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// println!("{}", d.defect(0));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn defect(&self, i: usize) -> &str {
        &self.defects[i]
    }

    /// Whether sample `i` is anomalous.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// let n_bad = (0..d.len()).filter(|&i| d.label(i)).count();
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn label(&self, i: usize) -> bool {
        self.labels[i]
    }

    /// The transformed (resized, cropped, not normalised) image of sample `i`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// assert_eq!(d.image(0).width(), d.transform().image_size);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn image(&self, i: usize) -> &RgbImage {
        &self.images[i]
    }

    /// The transformed, binarised (0 or 255) mask of sample `i`; `None` for defect-free or
    /// non-test samples.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// if let Some(m) = d.mask(0) { assert_eq!(m.dimensions(), d.image(0).dimensions()); }
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn mask(&self, i: usize) -> Option<&GrayImage> {
        self.masks.as_ref().and_then(|m| m[i].as_ref())
    }

    /// Stacks the given samples into a [`Batch`]. Errors on an empty or out-of-range index list.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// let b = d.batch(&[0, 1], &candle_core::Device::Cpu)?;
    /// assert_eq!(b.images.dims()[0], 2);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Batch> {
        if indices.is_empty() {
            return Err(DataError::InvalidArgument("empty batch".into()));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::InvalidArgument(format!(
                "sample index {bad} out of range (dataset of {})",
                self.len()
            )));
        }
        let s = self.transform.image_size as usize;
        let n = indices.len();
        let mut x = Vec::with_capacity(n * 3 * s * s);
        for &i in indices {
            normalize_chw_into(&self.images[i], &mut x);
        }
        let images = Tensor::from_vec(x, (n, 3, s, s), device)?;
        let masks = match &self.masks {
            None => None,
            Some(masks) => {
                let mut m = vec![0f32; n * s * s];
                for (k, &i) in indices.iter().enumerate() {
                    if let Some(mask) = &masks[i] {
                        for (dst, &v) in m[k * s * s..(k + 1) * s * s].iter_mut().zip(mask.as_raw())
                        {
                            *dst = f32::from(v > 127);
                        }
                    }
                }
                Some(Tensor::from_vec(m, (n, 1, s, s), device)?)
            }
        };
        Ok(Batch {
            images,
            masks,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            indices: indices.to_vec(),
        })
    }

    /// Iterates over the dataset in batches of `batch_size` (the last one may be smaller), in
    /// the given order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// let order = ikd_data::Order::Shuffled { seed: 0, epoch: 5 };
    /// let mut it = d.batches(2, order, &candle_core::Device::Cpu)?;
    /// it.seek(10); // resume at batch 10 of epoch 5
    /// for b in it { let b = b?; }
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn batches(&self, batch_size: usize, order: Order, device: &Device) -> Result<Batches<'_>> {
        if batch_size == 0 {
            return Err(zero_batch_size());
        }
        Ok(Batches {
            data: self,
            order: order.permutation(self.len()),
            batch_size,
            next: 0,
            device: device.clone(),
        })
    }
}

/// The iterator returned by [`Dataset::batches`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
/// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
/// let it = d.batches(4, ikd_data::Order::Sequential, &candle_core::Device::Cpu)?;
/// println!("{} batches", it.num_batches());
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Debug)]
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    device: Device,
}

impl Batches<'_> {
    /// The number of batches in the epoch.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// let it = d.batches(2, ikd_data::Order::Sequential, &candle_core::Device::Cpu)?;
    /// assert_eq!(it.num_batches(), d.len().div_ceil(2));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// The index of the batch the next call to `next` returns (save it to resume).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// let mut it = d.batches(2, ikd_data::Order::Sequential, &candle_core::Device::Cpu)?;
    /// it.next();
    /// assert_eq!(it.position(), 1);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn position(&self) -> usize {
        self.next
    }

    /// Moves to batch `batch` (clamped to the end) without building the skipped batches.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// let mut it = d.batches(2, ikd_data::Order::Sequential, &candle_core::Device::Cpu)?;
    /// it.seek(3);
    /// assert_eq!(it.position(), 3.min(it.num_batches()));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn seek(&mut self, batch: usize) {
        self.next = batch.min(self.num_batches());
    }

    /// The sample indices of batch `batch` in this epoch's order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// # let d = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16)?, false)?;
    /// let it = d.batches(2, ikd_data::Order::Sequential, &candle_core::Device::Cpu)?;
    /// assert_eq!(it.indices(0), &[0, 1]);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn indices(&self, batch: usize) -> &[usize] {
        let start = (batch * self.batch_size).min(self.order.len());
        let end = (start + self.batch_size).min(self.order.len());
        &self.order[start..end]
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.num_batches() {
            return None;
        }
        let b = self.next;
        self.next += 1;
        Some(self.data.batch(self.indices(b), &self.device))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.num_batches() - self.next;
        (left, Some(left))
    }

    fn nth(&mut self, n: usize) -> Option<Self::Item> {
        self.seek(self.next.saturating_add(n));
        self.next()
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// The error of a batch size of 0.
pub(crate) fn zero_batch_size() -> DataError {
    DataError::Setting {
        name: "batch_size",
        value: "0".into(),
        reason: "must be at least 1".into(),
    }
}
