//! Folder mode: a user's own images in plain folders (anomalib's `Folder` convention) instead of
//! the MVTec AD layout.
//!
//! ```text
//! <normal_dir>/*.png      defect-free images: a seeded share goes to the test set, the rest trains
//! <abnormal_dir>/*.png    defective images (test only)
//! <mask_dir>/<stem>.png   optional masks of the defective images (`<stem>_mask.png` also pairs)
//! ```
//!
//! Masks follow the same [`MaskPolicy`] as an MVTec-layout category: all or none unless
//! [`MaskPolicy::AllowMissing`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{DataError, Result};
use crate::layout::{dir_name, file_stem, list_images, Category, MaskPolicy, TestItem, GOOD};

/// The defect name given to the images of `abnormal_dir`.
///
/// ```
/// assert_eq!(ikd_data::folder::ABNORMAL, "abnormal");
/// ```
pub const ABNORMAL: &str = "abnormal";

/// A dataset of plain folders. It is part of a run's settings (serialised in its config).
///
/// ```
/// let f = ikd_data::FolderSpec::new("parts/ok");
/// assert_eq!(f.test_split, 0.2);
/// assert!(f.abnormal_dir.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSpec {
    /// Defect-free images.
    pub normal_dir: PathBuf,
    /// Defective images (test only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abnormal_dir: Option<PathBuf>,
    /// Masks of the defective images, named like them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_dir: Option<PathBuf>,
    /// Defect-free test images; without it, `test_split` of `normal_dir` is held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal_test_dir: Option<PathBuf>,
    /// The share of `normal_dir` held out for testing when there is no `normal_test_dir`.
    #[serde(default = "default_split")]
    pub test_split: f64,
    /// The seed of that hold-out.
    #[serde(default)]
    pub seed: u64,
}

fn default_split() -> f64 {
    0.2
}

impl FolderSpec {
    /// Only a folder of defect-free images; 20 % of it held out with seed 0.
    pub fn new(normal_dir: impl Into<PathBuf>) -> Self {
        Self {
            normal_dir: normal_dir.into(),
            abnormal_dir: None,
            mask_dir: None,
            normal_test_dir: None,
            test_split: default_split(),
            seed: 0,
        }
    }

    /// The category's name: the normal folder's parent's name when the normal folder is called
    /// like a class (`good`, `ok`, `normal`), else the normal folder's own name.
    ///
    /// ```
    /// assert_eq!(ikd_data::FolderSpec::new("screws/good").name(), "screws");
    /// assert_eq!(ikd_data::FolderSpec::new("screws_ok_2024").name(), "screws_ok_2024");
    /// ```
    pub fn name(&self) -> String {
        let own = dir_name(&self.normal_dir);
        let generic =
            ["good", "ok", "normal", "train"].contains(&own.to_ascii_lowercase().as_str());
        match self.normal_dir.parent().map(dir_name) {
            Some(parent) if generic && !parent.is_empty() => parent,
            _ => own,
        }
    }

    /// Lists, splits, pairs and checks the folders into a [`Category`] (train: the kept normal
    /// images; test: the held-out or `normal_test_dir` normal images as `good`, the abnormal ones
    /// as `abnormal`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
    /// #     image_size: 16, n_train: 10, n_test_good: 2, n_test_defect: 2, seed: 0 };
    /// # ikd_data::synthetic::generate(&cfg, dir.path())?;
    /// let spec = ikd_data::FolderSpec::new(dir.path().join("carpet/train/good"));
    /// let cat = spec.open(ikd_data::MaskPolicy::default())?;
    /// assert_eq!((cat.train.len(), cat.n_test_good()), (8, 2));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn open(&self, masks_policy: MaskPolicy) -> Result<Category> {
        if !(0.0..1.0).contains(&self.test_split) {
            return Err(DataError::Setting {
                name: "test_split",
                value: self.test_split.to_string(),
                reason: "the share of the normal images held out for testing must be in [0, 1)"
                    .into(),
            });
        }
        for d in [Some(&self.normal_dir), self.abnormal_dir.as_ref(), self.mask_dir.as_ref()]
            .into_iter()
            .chain([self.normal_test_dir.as_ref()])
            .flatten()
        {
            if !d.is_dir() {
                return Err(DataError::MissingDir { path: d.clone() });
            }
        }
        let mut normal = list_images(&self.normal_dir)?;
        let mut test_good = match &self.normal_test_dir {
            Some(d) => list_images(d)?,
            None => {
                let n_test = (normal.len() as f64 * self.test_split).round() as usize;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                let mut order: Vec<usize> = (0..normal.len()).collect();
                order.shuffle(&mut rng);
                let held: std::collections::BTreeSet<usize> =
                    order.into_iter().take(n_test).collect();
                let mut kept = Vec::new();
                let mut test = Vec::new();
                for (i, p) in normal.into_iter().enumerate() {
                    if held.contains(&i) {
                        test.push(p);
                    } else {
                        kept.push(p);
                    }
                }
                normal = kept;
                test
            }
        };
        if normal.is_empty() {
            return Err(DataError::EmptyTrain { path: self.normal_dir.clone() });
        }
        test_good.sort();
        let mut test: Vec<TestItem> = test_good
            .into_iter()
            .map(|path| TestItem {
                defect: GOOD.into(),
                stem: file_stem(&path),
                label: false,
                mask: None,
                path,
            })
            .collect();
        let mut without = Vec::new();
        let mut defective = 0;
        if let Some(ab) = &self.abnormal_dir {
            let mut masks: BTreeMap<String, PathBuf> = BTreeMap::new();
            if let Some(md) = &self.mask_dir {
                for m in list_images(md)? {
                    let stem = file_stem(&m);
                    let key = stem.strip_suffix("_mask").unwrap_or(&stem).to_string();
                    if let Some(first) = masks.insert(key.clone(), m.clone()) {
                        return Err(DataError::DuplicateMask {
                            image: ab.join(format!("{key}.png")),
                            first,
                            second: m,
                        });
                    }
                }
            }
            for path in list_images(ab)? {
                defective += 1;
                let stem = file_stem(&path);
                let mask = masks.remove(&stem);
                if mask.is_none() {
                    without.push(path.clone());
                }
                test.push(TestItem { defect: ABNORMAL.into(), stem, label: true, mask, path });
            }
            if let Some((key, mask)) = masks.into_iter().next() {
                return Err(DataError::ExtraMask { mask, expected: ab.join(format!("{key}.png")) });
            }
        }
        let refuse = match masks_policy {
            MaskPolicy::Required => !without.is_empty(),
            MaskPolicy::AllOrNone => !without.is_empty() && without.len() < defective,
            MaskPolicy::AllowMissing => false,
        };
        if refuse {
            let expected = self
                .mask_dir
                .as_ref()
                .map(|m| m.join(format!("{}.png", file_stem(&without[0]))))
                .unwrap_or_default();
            return Err(DataError::MissingMasks {
                dir: self.abnormal_dir.clone().unwrap_or_default(),
                defective,
                images: without,
                expected,
            });
        }
        let cat = Category {
            name: self.name(),
            dir: self.normal_dir.clone(),
            normal: GOOD.into(),
            train: normal,
            test,
        };
        cat.check_headers()?;
        Ok(cat)
    }
}
