//! A prefetching training loader: images are decoded on a background thread while the training
//! steps run, a bounded number of batches ahead, and kept in a memory-bounded cache for the
//! following epochs.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use crate::dataset::{Batch, Order};
use crate::error::{DataError, Result};
use crate::image_io::{image_dimensions, load_image};
use crate::transform::{normalize_chw_into, Transform};
use crate::Category;

/// How far a [`Loader`] reads ahead and how much decoded data it keeps.
///
/// ```
/// let opts = ikd_data::LoaderOptions { prefetch: 8, ..Default::default() };
/// assert_eq!(opts.cache_bytes, ikd_data::LoaderOptions::default().cache_bytes);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Batches decoded ahead of the training step (at least 1).
    pub prefetch: usize,
    /// Bytes of prepared (resized and cropped) images kept between epochs; images beyond it are
    /// decoded again in each epoch. A category of MVTec AD at 256² needs about 80 MB.
    pub cache_bytes: u64,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self { prefetch: 4, cache_bytes: 4 << 30 }
    }
}

/// Training images read in batches by a background thread that stays [`LoaderOptions::prefetch`]
/// batches ahead of the consumer; memory is bounded by the prefetch depth and the cache.
///
/// [`Loader::new`] reads every file's header (in parallel), so a missing, unreadable or
/// non-image file is an error before training starts; pixels are decoded while training runs.
/// Batches are the same, sample for sample and bit for bit, as [`crate::Dataset::batches`] gives
/// in the same order.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 5, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
/// let t = ikd_data::Transform::new(16, 16)?;
/// let loader = ikd_data::Loader::train(&cat, &t, Default::default())?;
/// for epoch in 0..2 {
///     let order = ikd_data::Order::Shuffled { seed: 0, epoch };
///     for batch in loader.epoch(2, order, 0, &candle_core::Device::Cpu)? {
///         let batch = batch?; // train on batch.images
///     }
/// }
/// assert_eq!(loader.cached(), 5); // the second epoch decoded nothing
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Debug)]
pub struct Loader {
    shared: Arc<Shared>,
    options: LoaderOptions,
}

#[derive(Debug)]
struct Shared {
    paths: Vec<PathBuf>,
    transform: Transform,
    cache: Mutex<Cache>,
}

#[derive(Debug)]
struct Cache {
    images: Vec<Option<Arc<RgbImage>>>,
    bytes: u64,
    limit: u64,
}

impl Shared {
    fn image(&self, i: usize) -> Result<Arc<RgbImage>> {
        if let Some(img) = &lock(&self.cache).images[i] {
            return Ok(img.clone());
        }
        let path = &self.paths[i];
        let img = Arc::new(self.transform.prepare_image(&load_image(path)?)?);
        let mut cache = lock(&self.cache);
        let size = img.as_raw().len() as u64;
        if cache.bytes + size <= cache.limit {
            cache.bytes += size;
            cache.images[i] = Some(img.clone());
        }
        Ok(img)
    }

    fn batch(&self, indices: &[usize]) -> Result<Vec<f32>> {
        let s = self.transform.image_size as usize;
        let mut x = Vec::with_capacity(indices.len() * 3 * s * s);
        for &i in indices {
            normalize_chw_into(&*self.image(i)?, &mut x);
        }
        Ok(x)
    }
}

fn lock(m: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    // the cache holds no invariant a panicking decoder could break
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Loader {
    /// A loader of `paths`, prepared with `transform`; checks each file's header first (errors
    /// name the file).
    pub fn new(paths: &[PathBuf], transform: &Transform, options: LoaderOptions) -> Result<Self> {
        if options.prefetch == 0 {
            return Err(DataError::Setting {
                name: "prefetch",
                value: "0".into(),
                reason: "must be at least 1 batch".into(),
            });
        }
        paths.par_iter().try_for_each(|p| image_dimensions(p).map(|_| ()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                paths: paths.to_vec(),
                transform: *transform,
                cache: Mutex::new(Cache {
                    images: vec![None; paths.len()],
                    bytes: 0,
                    limit: options.cache_bytes,
                }),
            }),
            options,
        })
    }

    /// A loader of a category's training images.
    pub fn train(
        category: &Category,
        transform: &Transform,
        options: LoaderOptions,
    ) -> Result<Self> {
        Self::new(&category.train, transform, options)
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.shared.paths.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.shared.paths.is_empty()
    }

    /// The image files, by sample index.
    pub fn paths(&self) -> &[PathBuf] {
        &self.shared.paths
    }

    /// How many prepared images the cache holds.
    pub fn cached(&self) -> usize {
        lock(&self.shared.cache).images.iter().filter(|i| i.is_some()).count()
    }

    /// The batches of one epoch in `order`, starting at batch `start` (to resume), each made on
    /// a background thread ahead of the consumer. Dropping the [`Epoch`] stops the thread.
    pub fn epoch(
        &self,
        batch_size: usize,
        order: Order,
        start: usize,
        device: &Device,
    ) -> Result<Epoch> {
        if batch_size == 0 {
            return Err(crate::dataset::zero_batch_size());
        }
        let order = order.permutation(self.len());
        let batches: Vec<Vec<usize>> =
            order.chunks(batch_size).skip(start).map(<[usize]>::to_vec).collect();
        let (tx, rx) = sync_channel::<Made>(self.options.prefetch);
        let shared = self.shared.clone();
        let worker = std::thread::Builder::new()
            .name("ikd-loader".into())
            .spawn(move || {
                for indices in batches {
                    let made = shared.batch(&indices).map(|x| (x, indices));
                    let failed = made.is_err();
                    // the consumer went away: stop
                    if tx.send(made).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| DataError::Internal(format!("cannot start the loader thread: {e}")))?;
        Ok(Epoch {
            rx: Some(rx),
            worker: Some(worker),
            device: device.clone(),
            size: self.transform_size(),
            left: order.len().div_ceil(batch_size).saturating_sub(start),
        })
    }

    fn transform_size(&self) -> usize {
        self.shared.transform.image_size as usize
    }
}

type Made = Result<(Vec<f32>, Vec<usize>)>;

/// One epoch's batches from a [`Loader`], in order; an error ends the epoch.
#[derive(Debug)]
pub struct Epoch {
    rx: Option<Receiver<Made>>,
    worker: Option<JoinHandle<()>>,
    device: Device,
    size: usize,
    left: usize,
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let made = match self.rx.as_ref().map(Receiver::recv) {
            Some(Ok(made)) => made,
            _ => {
                // the worker ended early: it panicked (an error would have been sent)
                self.left = 0;
                return Some(Err(DataError::Internal("the loader thread stopped".into())));
            }
        };
        self.left -= 1;
        let (x, indices) = match made {
            Ok(m) => m,
            Err(e) => {
                self.left = 0;
                return Some(Err(e));
            }
        };
        let s = self.size;
        Some(Tensor::from_vec(x, (indices.len(), 3, s, s), &self.device).map_err(Into::into).map(
            |images| Batch { images, masks: None, labels: vec![false; indices.len()], indices },
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Closing the channel makes the worker's send fail (also one it is blocked in), so it
        // ends after the batch at hand.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
