//! Connected-component labelling of binary masks (4- and 8-connectivity), run-based.

use crate::MetricsError;

mod private {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for bool {}
}

/// A ground-truth mask pixel: `u8` (nonzero = defect) or `bool` (`true` = defect).
///
/// ```
/// use ikd_metrics::MaskPixel;
///
/// assert!(255_u8.is_defect() && 1_u8.is_defect() && !0_u8.is_defect());
/// assert!(true.is_defect() && !false.is_defect());
/// ```
pub trait MaskPixel: Copy + Send + Sync + private::Sealed {
    /// Whether the pixel belongs to a defect.
    ///
    /// ```
    /// use ikd_metrics::MaskPixel;
    /// let mask = [0_u8, 3, 0];
    /// assert_eq!(mask.iter().filter(|p| p.is_defect()).count(), 1);
    /// ```
    fn is_defect(self) -> bool;
}

impl MaskPixel for u8 {
    #[inline(always)]
    fn is_defect(self) -> bool {
        self != 0
    }
}

impl MaskPixel for bool {
    #[inline(always)]
    fn is_defect(self) -> bool {
        self
    }
}

/// Which neighbours make two defect pixels part of the same region.
///
/// ```
/// use ikd_metrics::Connectivity;
///
/// // MVTec AD's evaluation (and IKD's) use 8-connected regions.
/// assert_eq!(Connectivity::default(), Connectivity::Eight);
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Connectivity {
    /// Left, right, up and down neighbours.
    Four,
    /// The 4 neighbours and the 4 diagonal ones.
    #[default]
    Eight,
}

/// The connected components of a mask, as returned by [`label_components`].
///
/// Labels are `1..=count()` in the raster order of each region's first pixel (as
/// `scipy.ndimage.label` and `skimage.measure.label` number them); 0 is the background.
///
/// ```
/// use ikd_metrics::{label_components, Connectivity};
///
/// let mask: [u8; 6] = [1, 0, 1,
///                      0, 1, 0];
/// let eight = label_components(&mask, 3, 2, Connectivity::Eight)?;
/// assert_eq!(eight.count(), 1);
/// assert_eq!(eight.labels(), &[1, 0, 1, 0, 1, 0]);
/// let four = label_components(&mask, 3, 2, Connectivity::Four)?;
/// assert_eq!(four.count(), 3);
/// assert_eq!(four.labels(), &[1, 0, 2, 0, 3, 0]);
/// assert_eq!(four.sizes(), &[1, 1, 1]);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components {
    labels: Vec<u32>,
    sizes: Vec<u32>,
    width: usize,
    height: usize,
}

impl Components {
    /// Number of regions.
    ///
    /// ```
    /// # use ikd_metrics::{label_components, Connectivity};
    /// let c = label_components(&[true, false, true], 3, 1, Connectivity::Eight)?;
    /// assert_eq!(c.count(), 2);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    /// One label per pixel, row-major: 0 for background, `1..=count()` for the regions.
    ///
    /// ```
    /// # use ikd_metrics::{label_components, Connectivity};
    /// let c = label_components(&[0_u8, 7, 7], 3, 1, Connectivity::Four)?;
    /// assert_eq!(c.labels(), &[0, 1, 1]);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Pixel count of each region: `sizes()[l - 1]` is the size of label `l`.
    ///
    /// ```
    /// # use ikd_metrics::{label_components, Connectivity};
    /// let c = label_components(&[1_u8, 0, 1, 1], 4, 1, Connectivity::Eight)?;
    /// assert_eq!(c.sizes(), &[1, 2]);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn sizes(&self) -> &[u32] {
        &self.sizes
    }

    /// Width of the labelled mask.
    ///
    /// ```
    /// # use ikd_metrics::{label_components, Connectivity};
    /// let c = label_components(&[0_u8; 6], 3, 2, Connectivity::Eight)?;
    /// assert_eq!((c.width(), c.height()), (3, 2));
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height of the labelled mask.
    ///
    /// ```
    /// # use ikd_metrics::{label_components, Connectivity};
    /// let c = label_components(&[0_u8; 6], 2, 3, Connectivity::Eight)?;
    /// assert_eq!(c.height(), 3);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn height(&self) -> usize {
        self.height
    }
}

/// Labels the connected regions of defect pixels of a row-major `width`×`height` mask.
///
/// Works on runs of defect pixels (a row scan that skips empty stretches 32 pixels at a time, then
/// union-find over runs), so its cost is one pass over the mask plus the number of runs.
///
/// ```
/// use ikd_metrics::{label_components, Connectivity};
///
/// #[rustfmt::skip]
/// let mask: [u8; 12] = [1, 1, 0, 0,
///                       0, 0, 0, 1,
///                       1, 0, 1, 1];
/// let c = label_components(&mask, 4, 3, Connectivity::Eight)?;
/// assert_eq!(c.count(), 3);
/// assert_eq!(c.labels(), &[1, 1, 0, 0, 0, 0, 0, 2, 3, 0, 2, 2]);
/// assert_eq!(c.sizes(), &[2, 3, 1]);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// [`MetricsError::MaskSizeMismatch`] if `mask.len() != width * height`.
pub fn label_components<M: MaskPixel>(
    mask: &[M],
    width: usize,
    height: usize,
    connectivity: Connectivity,
) -> Result<Components, MetricsError> {
    let expected = width.saturating_mul(height);
    if width.checked_mul(height) != Some(mask.len()) || u32::try_from(mask.len()).is_err() {
        return Err(MetricsError::MaskSizeMismatch { width, height, expected, len: mask.len() });
    }
    let mut labeller = RunLabeller::default();
    labeller.label(mask, width, height, connectivity);
    let mut labels = vec![0_u32; mask.len()];
    for run in &labeller.runs {
        let row = run.y as usize * width;
        labels[row + run.x0 as usize..row + run.x1 as usize].fill(run.label);
    }
    Ok(Components { labels, sizes: labeller.sizes, width, height })
}

/// A horizontal run of defect pixels `x0..x1` in row `y`, with its region label (1-based once
/// labelling is done).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) y: u32,
    pub(crate) x0: u32,
    pub(crate) x1: u32,
    pub(crate) label: u32,
}

/// Reusable buffers of the run-based labelling.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunLabeller {
    /// Runs in raster order, labelled.
    pub(crate) runs: Vec<Run>,
    /// `sizes[l - 1]`: pixel count of region `l`.
    pub(crate) sizes: Vec<u32>,
    parent: Vec<u32>,
    root_label: Vec<u32>,
    /// Scratch for hole filling.
    by_label: Vec<u32>,
    first: Vec<u32>,
    bitmap: Vec<u8>,
    stack: Vec<u32>,
}

#[inline]
fn any_defect<M: MaskPixel>(chunk: &[M]) -> bool {
    chunk.iter().fold(0_u8, |acc, &p| acc | u8::from(p.is_defect())) != 0
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let grand = parent[parent[x as usize] as usize];
        parent[x as usize] = grand;
        x = grand;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let ra = find(parent, a);
    let rb = find(parent, b);
    // The smaller run index stays the root: roots are the first run of their region.
    match ra.cmp(&rb) {
        std::cmp::Ordering::Less => parent[rb as usize] = ra,
        std::cmp::Ordering::Greater => parent[ra as usize] = rb,
        std::cmp::Ordering::Equal => {}
    }
}

impl RunLabeller {
    /// Labels `mask` (whose length the caller has checked); returns the number of regions.
    pub(crate) fn label<M: MaskPixel>(
        &mut self,
        mask: &[M],
        width: usize,
        height: usize,
        connectivity: Connectivity,
    ) -> usize {
        self.runs.clear();
        self.parent.clear();
        self.sizes.clear();
        // Touching runs of consecutive rows: 8-connectivity also joins diagonal neighbours.
        let reach = u32::from(connectivity == Connectivity::Eight);
        let mut prev = 0..0;
        for y in 0..height {
            let row = &mask[y * width..(y + 1) * width];
            let start = self.runs.len();
            let mut x = 0;
            while x < width {
                while x + 32 <= width && !any_defect(&row[x..x + 32]) {
                    x += 32;
                }
                match row[x..].iter().position(|p| p.is_defect()) {
                    None => break,
                    Some(p) => x += p,
                }
                let x0 = x;
                while x < width && row[x].is_defect() {
                    x += 1;
                }
                let id = self.runs.len() as u32;
                self.runs.push(Run { y: y as u32, x0: x0 as u32, x1: x as u32, label: id });
                self.parent.push(id);
            }
            let cur = start..self.runs.len();
            let (mut i, mut j) = (prev.start, cur.start);
            while i < prev.end && j < cur.end {
                let (p, c) = (self.runs[i], self.runs[j]);
                if p.x0 < c.x1 + reach && c.x0 < p.x1 + reach {
                    union(&mut self.parent, i as u32, j as u32);
                }
                if p.x1 < c.x1 {
                    i += 1;
                } else {
                    j += 1;
                }
            }
            prev = cur;
        }
        self.root_label.clear();
        self.root_label.resize(self.runs.len(), 0);
        for r in 0..self.runs.len() {
            let root = find(&mut self.parent, r as u32) as usize;
            if self.root_label[root] == 0 {
                self.sizes.push(0);
                self.root_label[root] = self.sizes.len() as u32;
            }
            let label = self.root_label[root];
            let run = &mut self.runs[r];
            run.label = label;
            self.sizes[label as usize - 1] += run.x1 - run.x0;
        }
        self.sizes.len()
    }

    /// Calls `f(pixel, region_size)` for every pixel in a hole of a labelled region, as
    /// `skimage`'s `regionprops(...).filled_image` fills them: within the region's bounding box,
    /// the pixels outside the region that are not 8-connected (through pixels outside the region)
    /// to the box's border. `pixel` is the row-major index in the image.
    pub(crate) fn for_each_hole_pixel(&mut self, width: usize, mut f: impl FnMut(usize, u32)) {
        let regions = self.sizes.len();
        if regions == 0 {
            return;
        }
        // Group run indices by label (counting sort).
        self.first.clear();
        self.first.resize(regions + 1, 0);
        for run in &self.runs {
            self.first[run.label as usize] += 1;
        }
        for l in 1..=regions {
            self.first[l] += self.first[l - 1];
        }
        self.by_label.clear();
        self.by_label.resize(self.runs.len(), 0);
        let mut fill = self.first.clone();
        for (r, run) in self.runs.iter().enumerate() {
            let slot = &mut fill[run.label as usize - 1];
            self.by_label[*slot as usize] = r as u32;
            *slot += 1;
        }
        for label in 1..=regions {
            let idx = &self.by_label[self.first[label - 1] as usize..self.first[label] as usize];
            let (mut y0, mut y1, mut x0, mut x1) = (u32::MAX, 0, u32::MAX, 0);
            for &r in idx {
                let run = self.runs[r as usize];
                y0 = y0.min(run.y);
                y1 = y1.max(run.y + 1);
                x0 = x0.min(run.x0);
                x1 = x1.max(run.x1);
            }
            let (bw, bh) = ((x1 - x0) as usize, (y1 - y0) as usize);
            let size = self.sizes[label - 1] as usize;
            if bw < 3 || bh < 3 || size == bw * bh {
                continue; // no interior pixel outside the region: no hole
            }
            // 0 = outside the region, 1 = region, 2 = outside and reached from the border.
            self.bitmap.clear();
            self.bitmap.resize(bw * bh, 0);
            for &r in idx {
                let run = self.runs[r as usize];
                let row = (run.y - y0) as usize * bw;
                self.bitmap[row + (run.x0 - x0) as usize..row + (run.x1 - x0) as usize].fill(1);
            }
            self.stack.clear();
            for y in 0..bh {
                for x in 0..bw {
                    if (y == 0 || y + 1 == bh || x == 0 || x + 1 == bw)
                        && self.bitmap[y * bw + x] == 0
                    {
                        self.bitmap[y * bw + x] = 2;
                        self.stack.push((y * bw + x) as u32);
                    }
                }
            }
            while let Some(p) = self.stack.pop() {
                let (y, x) = (p as usize / bw, p as usize % bw);
                for ny in y.saturating_sub(1)..(y + 2).min(bh) {
                    for nx in x.saturating_sub(1)..(x + 2).min(bw) {
                        let q = ny * bw + nx;
                        if self.bitmap[q] == 0 {
                            self.bitmap[q] = 2;
                            self.stack.push(q as u32);
                        }
                    }
                }
            }
            for (q, &v) in self.bitmap.iter().enumerate() {
                if v == 0 {
                    let (y, x) = (q / bw + y0 as usize, q % bw + x0 as usize);
                    f(y * width + x, size as u32);
                }
            }
        }
    }
}
