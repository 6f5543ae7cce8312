//! Reading a category in MVTec AD layout.
//!
//! ```text
//! <root>/<category>/train/<normal>/*.png
//! <root>/<category>/test/<defect>/*.png              (<defect> = <normal> for defect-free images)
//! <root>/<category>/ground_truth/<defect>/<stem>_mask.png
//! ```
//!
//! `<normal>` is `good` (MVTec AD, MPDD, converted VisA, LOCO, AD 2, Kolektor) or `ok` (BTAD):
//! the first of [`NORMAL_NAMES`] found under `train/`. MPDD and the converted datasets use this
//! layout, so any category folder laid out like this is read, not only the fifteen MVTec AD names.
//! Masks are paired with their test image by name (`<stem>_mask.<ext>`, or `<stem>.<ext>` as BTAD
//! and some conversions write them), never by position. Masks are optional as a whole (see
//! [`MaskPolicy`]): without any, a category is scored at image level only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{DataError, IoContext, Result};
use crate::image_io::{image_dimensions, is_image_path};

/// The fifteen categories of MVTec AD, in alphabetical order.
///
/// ```
/// assert_eq!(ikd_data::MVTEC_CATEGORIES.len(), 15);
/// ```
pub const MVTEC_CATEGORIES: [&str; 15] = [
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
];

/// The name of the defect-free class in `train/` and `test/` (MVTec AD's).
///
/// ```
/// assert_eq!(ikd_data::GOOD, "good");
/// ```
pub const GOOD: &str = "good";

/// The names a defect-free folder goes by, in the order they are looked for under `train/`:
/// `good` (the MVTec family, VisA, Kolektor after conversion) and `ok` (BTAD).
///
/// ```
/// assert_eq!(ikd_data::NORMAL_NAMES, ["good", "ok"]);
/// ```
pub const NORMAL_NAMES: [&str; 2] = [GOOD, "ok"];

/// What to do about defective test images without a ground-truth mask.
///
/// ```
/// use ikd_data::MaskPolicy;
/// assert_eq!(MaskPolicy::default(), MaskPolicy::AllOrNone);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskPolicy {
    /// Either every defective test image has a mask (pixel and image metrics) or none has
    /// (image-level metrics only); a partial set is an error naming the images without one.
    #[default]
    AllOrNone,
    /// Any subset may have masks (the setting `allow_missing_masks`): pixel metrics use the images that have
    /// one (and the defect-free images), image metrics use all.
    AllowMissing,
    /// Every defective test image must have a mask (a downloaded benchmark).
    Required,
}

/// How the masks of a category's defective test images cover them.
///
/// ```
/// use ikd_data::MaskCoverage;
/// assert!(MaskCoverage::All.pixel_level());
/// assert!(!MaskCoverage::None.pixel_level());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskCoverage {
    /// Every defective test image has a mask (or there is no defective test image).
    All,
    /// Some have one (only with [`MaskPolicy::AllowMissing`]).
    Partial,
    /// None has one: image-level metrics only.
    None,
}

impl MaskCoverage {
    /// Whether pixel-level metrics can be computed.
    pub fn pixel_level(self) -> bool {
        self != MaskCoverage::None
    }
}

/// Image counts of a dataset (or of one category).
///
/// ```
/// let c = ikd_data::Counts { train: 3, test_good: 1, test_defect: 2 };
/// assert_eq!(c.total(), 6);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Images in `train/good`.
    pub train: usize,
    /// Images in `test/good`.
    pub test_good: usize,
    /// Images in `test/<defect>` for every defect other than `good` (each has a mask).
    pub test_defect: usize,
}

impl Counts {
    /// All images.
    ///
    /// ```
    /// assert_eq!(ikd_data::Counts::default().total(), 0);
    /// ```
    pub fn total(&self) -> usize {
        self.train + self.test_good + self.test_defect
    }

    /// Adds another dataset's (or category's) counts.
    ///
    /// ```
    /// let mut c = ikd_data::Counts { train: 3, test_good: 1, test_defect: 2 };
    /// c.add(&c.clone());
    /// assert_eq!(c.total(), 12);
    /// ```
    pub fn add(&mut self, o: &Counts) {
        self.train += o.train;
        self.test_good += o.test_good;
        self.test_defect += o.test_defect;
    }
}

/// One test image of a category.
///
/// ```
/// let item = ikd_data::TestItem {
///     path: "bottle/test/crack/000.png".into(),
///     defect: "crack".into(),
///     stem: "000".into(),
///     label: true,
///     mask: Some("bottle/ground_truth/crack/000_mask.png".into()),
/// };
/// assert!(item.label);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestItem {
    /// The image file.
    pub path: PathBuf,
    /// The defect type: the name of the folder under `test/` (`good` for defect-free images).
    pub defect: String,
    /// The file name without extension.
    pub stem: String,
    /// `true` for an anomalous (defective) image.
    pub label: bool,
    /// The ground-truth mask of an anomalous image (`None` for defect-free images, and for
    /// anomalous ones without a mask: see [`MaskPolicy`]).
    pub mask: Option<PathBuf>,
}

/// A category in MVTec AD layout, with its files listed, paired and checked.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// let cat = ikd_data::Category::open(dir.path(), "carpet")?; // e.g. (mvtec_root, "bottle")
/// println!("{} training images, {} test images", cat.train.len(), cat.test.len());
/// assert_eq!(cat.test.iter().filter(|t| t.mask.is_some()).count(), 2);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    /// The category's name (its folder name).
    pub name: String,
    /// The category's folder.
    pub dir: PathBuf,
    /// The name of the defect-free class (`good`, `ok`, …).
    pub normal: String,
    /// The training images (`train/<normal>`), sorted.
    pub train: Vec<PathBuf>,
    /// The test images (`test/<defect>`), sorted by path.
    pub test: Vec<TestItem>,
}

/// Lists a folder's entries, sorted, skipping hidden ones (names starting with `.`).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Lists the image files of a folder, sorted; any other (non-hidden) entry is an error.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = list_dir(dir)?;
    for p in &entries {
        if !p.is_file() || !is_image_path(p) {
            return Err(DataError::NotAnImage { path: p.clone() });
        }
    }
    Ok(entries)
}

/// Lists the sub-folders of a folder, sorted; any other (non-hidden) entry is an error.
fn list_subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = list_dir(dir)?;
    for p in &entries {
        if !p.is_dir() {
            return Err(DataError::NotAnImage { path: p.clone() });
        }
    }
    Ok(entries)
}

pub(crate) fn file_stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

pub(crate) fn dir_name(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Category {
    /// Opens `<root>/<name>`; see [`Category::open_dir`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// assert!(ikd_data::Category::open(dir.path(), "bottle").is_err());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn open(root: impl AsRef<Path>, name: &str) -> Result<Self> {
        Self::open_with(root, name, MaskPolicy::default())
    }

    /// Opens `<root>/<name>` with a [`MaskPolicy`]; see [`Category::open_dir_with`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open_with(dir.path(), "carpet", ikd_data::MaskPolicy::Required)?;
    /// assert_eq!(cat.mask_coverage(), ikd_data::MaskCoverage::All);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn open_with(root: impl AsRef<Path>, name: &str, masks: MaskPolicy) -> Result<Self> {
        let dir = root.as_ref().join(name);
        if !dir.is_dir() {
            return Err(DataError::MissingCategory { name: name.to_string(), path: dir });
        }
        Self::open_dir_with(dir, masks)
    }

    /// Opens a category folder with the default [`MaskPolicy`] (all masks or none); see
    /// [`Category::open_dir_with`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open_dir(dir.path().join("carpet"))?;
    /// assert_eq!(cat.name, "carpet");
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_dir_with(dir, MaskPolicy::default())
    }

    /// Opens a category folder: finds the defect-free class (the first of [`NORMAL_NAMES`]
    /// under `train/`), lists `train/<normal>` and `test/*`, pairs defective test images with
    /// their masks by name, applies `masks` to those without one, and reads every file's header
    /// to check that it is an image and that each mask has its image's size.
    ///
    /// `test/` and `ground_truth/` may be absent (a category that can be trained on but not
    /// evaluated); `train/<normal>` must hold at least one image.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// # std::fs::remove_dir_all(dir.path().join("carpet/ground_truth")).unwrap();
    /// // a category without any mask: image-level only
    /// let cat = ikd_data::Category::open_dir_with(dir.path().join("carpet"), Default::default())?;
    /// assert_eq!(cat.mask_coverage(), ikd_data::MaskCoverage::None);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn open_dir_with(dir: impl AsRef<Path>, masks_policy: MaskPolicy) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(DataError::MissingCategory { name: dir_name(&dir), path: dir });
        }
        let name = dir_name(&dir);
        let normal = NORMAL_NAMES
            .iter()
            .find(|n| dir.join("train").join(n).is_dir())
            .copied()
            .unwrap_or(GOOD)
            .to_string();
        let train_dir = dir.join("train").join(&normal);
        if !train_dir.is_dir() {
            return Err(DataError::MissingDir { path: train_dir });
        }
        let train = list_images(&train_dir)?;
        if train.is_empty() {
            return Err(DataError::EmptyTrain { path: train_dir });
        }

        let mut test = Vec::new();
        let test_dir = dir.join("test");
        if test_dir.exists() {
            for defect_dir in list_subdirs(&test_dir)? {
                let defect = dir_name(&defect_dir);
                for path in list_images(&defect_dir)? {
                    let stem = file_stem(&path);
                    test.push(TestItem {
                        label: defect != normal,
                        defect: defect.clone(),
                        stem,
                        path,
                        mask: None,
                    });
                }
            }
        }
        test.sort_by(|a, b| a.path.cmp(&b.path));

        // Masks keyed by (defect, stem of the image they belong to).
        let gt_dir = dir.join("ground_truth");
        let mut masks: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
        if gt_dir.exists() {
            for defect_dir in list_subdirs(&gt_dir)? {
                let defect = dir_name(&defect_dir);
                for mask in list_images(&defect_dir)? {
                    let stem = file_stem(&mask);
                    let key = stem.strip_suffix("_mask").unwrap_or(&stem).to_string();
                    if let Some(first) = masks.insert((defect.clone(), key.clone()), mask.clone()) {
                        return Err(DataError::DuplicateMask {
                            image: test_dir.join(&defect).join(format!("{key}.png")),
                            first,
                            second: mask,
                        });
                    }
                }
            }
        }
        let mut without = Vec::new();
        for item in test.iter_mut().filter(|i| i.label) {
            match masks.remove(&(item.defect.clone(), item.stem.clone())) {
                Some(m) => item.mask = Some(m),
                None => without.push(item.path.clone()),
            }
        }
        let defective = test.iter().filter(|i| i.label).count();
        let refuse = match masks_policy {
            MaskPolicy::Required => !without.is_empty(),
            MaskPolicy::AllOrNone => !without.is_empty() && without.len() < defective,
            MaskPolicy::AllowMissing => false,
        };
        if refuse {
            let first = test
                .iter()
                .find(|i| i.label && i.mask.is_none())
                .map(|item| gt_dir.join(&item.defect).join(format!("{}_mask.png", item.stem)));
            return Err(DataError::MissingMasks {
                dir: dir.clone(),
                defective,
                images: without,
                expected: first.unwrap_or_default(),
            });
        }
        if let Some(((defect, key), mask)) = masks.into_iter().next() {
            return Err(DataError::ExtraMask {
                mask,
                expected: test_dir.join(defect).join(format!("{key}.png")),
            });
        }

        let cat = Category { name, dir, normal, train, test };
        cat.check_headers()?;
        Ok(cat)
    }

    /// Reads every file's header (in parallel): each must be a decodable image format and each
    /// mask must have its image's size.
    pub(crate) fn check_headers(&self) -> Result<()> {
        self.train.par_iter().try_for_each(|p| image_dimensions(p).map(|_| ()))?;
        self.test.par_iter().try_for_each(|item| {
            let (w, h) = image_dimensions(&item.path)?;
            if let Some(mask) = &item.mask {
                let (mw, mh) = image_dimensions(mask)?;
                if (mw, mh) != (w, h) {
                    return Err(DataError::MaskSizeMismatch {
                        mask: mask.clone(),
                        image: item.path.clone(),
                        mask_w: mw,
                        mask_h: mh,
                        image_w: w,
                        image_h: h,
                    });
                }
            }
            Ok(())
        })
    }

    /// How the masks cover the defective test images: all of them, some (only with
    /// [`MaskPolicy::AllowMissing`]) or none (image-level metrics only).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// assert!(cat.mask_coverage().pixel_level());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn mask_coverage(&self) -> MaskCoverage {
        let defective = self.n_test_defect();
        let with = self.test.iter().filter(|i| i.label && i.mask.is_some()).count();
        if with == defective {
            MaskCoverage::All
        } else if with == 0 {
            MaskCoverage::None
        } else {
            MaskCoverage::Partial
        }
    }

    /// The number of defect-free test images.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// assert_eq!((cat.n_test_good(), cat.n_test_defect()), (2, 2));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn n_test_good(&self) -> usize {
        self.test.iter().filter(|i| !i.label).count()
    }

    /// The number of defective test images.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// assert!(cat.n_test_defect() <= cat.test.len());
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn n_test_defect(&self) -> usize {
        self.test.iter().filter(|i| i.label).count()
    }

    /// The defect types present in `test/` (folder names, sorted, `good` included).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let cat = ikd_data::Category::open(dir.path(), "carpet")?;
    /// assert_eq!(cat.defect_types(), vec!["good", "hole", "scratch"]);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn defect_types(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.test.iter().map(|i| i.defect.as_str()).collect();
        v.dedup();
        v
    }
}

/// The category folders under a dataset root: the sub-folders that hold `train/<normal>` (any of
/// [`NORMAL_NAMES`]), sorted.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// assert_eq!(ikd_data::list_categories(dir.path())?, vec!["carpet"]);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn list_categories(root: impl AsRef<Path>) -> Result<Vec<String>> {
    let root = root.as_ref();
    Ok(list_dir(root)?
        .into_iter()
        .filter(|p| NORMAL_NAMES.iter().any(|n| p.join("train").join(n).is_dir()))
        .map(|p| dir_name(&p))
        .collect())
}
