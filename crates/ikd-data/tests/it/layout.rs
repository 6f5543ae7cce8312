//! Reading the MVTec AD layout, and each layout error with its message.

use std::fs;
use std::path::Path;

use ikd_data::{Category, DataError, MaskCoverage, MaskPolicy};
use image::{DynamicImage, GrayImage, ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};

use crate::common::tiny_dataset;

fn open_err(root: &Path, name: &str) -> (DataError, String) {
    let e = Category::open(root, name).expect_err("the category should be refused");
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn reads_sorted_and_paired_by_name() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    // A hidden file is ignored.
    fs::write(dir.path().join("carpet/train/good/.DS_Store"), b"x").unwrap();
    let cat = Category::open(dir.path(), "carpet").unwrap();
    assert_eq!(cat.name, "carpet");
    assert_eq!(cat.train.len(), 3);
    assert!(cat.train.windows(2).all(|w| w[0] < w[1]));
    assert!(cat.test.windows(2).all(|w| w[0].path < w[1].path));
    assert_eq!(cat.n_test_good(), 2);
    assert_eq!(cat.n_test_defect(), 5);
    assert_eq!(
        cat.defect_types(),
        vec!["contamination", "good", "hole", "missing", "scratch", "stain"]
    );
    for item in &cat.test {
        assert_eq!(item.label, item.defect != "good");
        assert_eq!(item.path.file_stem().unwrap().to_str().unwrap(), item.stem);
        match &item.mask {
            Some(m) => {
                assert!(item.label);
                assert_eq!(
                    m.file_name().unwrap().to_str().unwrap(),
                    format!("{}_mask.png", item.stem)
                );
                assert!(m
                    .parent()
                    .unwrap()
                    .ends_with(Path::new("ground_truth").join(&item.defect)));
            }
            None => assert!(!item.label),
        }
    }
    assert_eq!(ikd_data::list_categories(dir.path()).unwrap(), vec!["carpet"]);
}

#[test]
fn masks_pair_by_name_not_position() {
    // Test images 1.png, 2.png, 10.png sort as 1, 10, 2; masks named without `_mask` also pair.
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("parts");
    for d in ["train/good", "test/crack", "ground_truth/crack"] {
        fs::create_dir_all(c.join(d)).unwrap();
    }
    RgbImage::new(8, 8).save(c.join("train/good/0.png")).unwrap();
    for (stem, w) in [("1", 8), ("2", 9), ("10", 10)] {
        RgbImage::new(w, 8).save(c.join(format!("test/crack/{stem}.png"))).unwrap();
    }
    GrayImage::new(8, 8).save(c.join("ground_truth/crack/1_mask.png")).unwrap();
    GrayImage::new(10, 8).save(c.join("ground_truth/crack/10_mask.png")).unwrap();
    GrayImage::new(9, 8).save(c.join("ground_truth/crack/2.png")).unwrap();
    let cat = Category::open(dir.path(), "parts").unwrap();
    let stems: Vec<_> = cat.test.iter().map(|i| i.stem.as_str()).collect();
    assert_eq!(stems, vec!["1", "10", "2"]);
    for item in &cat.test {
        let m = item.mask.as_ref().unwrap();
        let ms = m.file_stem().unwrap().to_str().unwrap();
        assert_eq!(ms.strip_suffix("_mask").unwrap_or(ms), item.stem);
    }
    // No test folder at all: a train-only category is fine.
    fs::remove_dir_all(c.join("test")).unwrap();
    fs::remove_dir_all(c.join("ground_truth")).unwrap();
    let cat = Category::open(dir.path(), "parts").unwrap();
    assert!(cat.test.is_empty());
}

#[test]
fn missing_category() {
    let dir = tempfile::tempdir().unwrap();
    let (e, msg) = open_err(dir.path(), "bottle");
    assert!(matches!(e, DataError::MissingCategory { .. }), "{e:?}");
    assert!(msg.contains("category `bottle` not found"), "{msg}");
    assert!(msg.contains(&dir.path().join("bottle").display().to_string()), "{msg}");
}

#[test]
fn missing_train_folder() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("bottle/test/good")).unwrap();
    let (e, msg) = open_err(dir.path(), "bottle");
    assert!(matches!(e, DataError::MissingDir { .. }), "{e:?}");
    assert!(msg.contains("bottle/train/good: missing folder"), "{msg}");
}

#[test]
fn empty_train() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    for f in fs::read_dir(dir.path().join("carpet/train/good")).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let (e, msg) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::EmptyTrain { .. }), "{e:?}");
    assert!(msg.contains("carpet/train/good: no training images"), "{msg}");
}

#[test]
fn missing_mask() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    fs::remove_file(dir.path().join("carpet/ground_truth/hole/000_mask.png")).unwrap();
    let (e, msg) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::MissingMasks { .. }), "{e:?}");
    assert!(msg.contains("1 of 5 defective test images have no mask"), "{msg}");
    assert!(msg.contains("carpet/test/hole/000.png"), "{msg}");
    assert!(msg.contains("carpet/ground_truth/hole/000_mask.png"), "{msg}");
    assert!(msg.contains("allow_missing_masks") && !msg.contains("--"), "{msg}");
    assert_eq!(e.setting(), Some("allow_missing_masks"));
    // Allowed: the image is kept, without a mask; the coverage says so.
    let cat = Category::open_with(dir.path(), "carpet", MaskPolicy::AllowMissing).unwrap();
    assert_eq!(cat.n_test_defect(), 5);
    assert_eq!(cat.mask_coverage(), MaskCoverage::Partial);
    let hole = cat.test.iter().find(|t| t.defect == "hole").unwrap();
    assert!(hole.label && hole.mask.is_none());
    // Required (a downloaded benchmark): refused too.
    assert!(Category::open_with(dir.path(), "carpet", MaskPolicy::Required).is_err());
}

#[test]
fn no_masks_at_all_is_image_level() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    fs::remove_dir_all(dir.path().join("carpet/ground_truth")).unwrap();
    let cat = Category::open(dir.path(), "carpet").unwrap();
    assert_eq!(cat.n_test_defect(), 5);
    assert_eq!(cat.mask_coverage(), MaskCoverage::None);
    assert!(!cat.mask_coverage().pixel_level());
    let e = Category::open_with(dir.path(), "carpet", MaskPolicy::Required).unwrap_err();
    assert!(e.to_string().contains("5 of 5 defective test images have no mask"), "{e}");
}

#[test]
fn ok_folders_are_the_normal_class() {
    // BTAD's naming: train/ok, test/ok, test/ko, ground_truth/ko/<stem>.png
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let c = dir.path().join("carpet");
    fs::rename(c.join("train/good"), c.join("train/ok")).unwrap();
    fs::rename(c.join("test/good"), c.join("test/ok")).unwrap();
    assert_eq!(ikd_data::list_categories(dir.path()).unwrap(), vec!["carpet"]);
    let cat = Category::open(dir.path(), "carpet").unwrap();
    assert_eq!(cat.normal, "ok");
    assert_eq!((cat.train.len(), cat.n_test_good(), cat.n_test_defect()), (3, 2, 5));
    assert!(cat.test.iter().filter(|t| t.defect == "ok").all(|t| !t.label));
}

#[test]
fn extra_mask() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let gt = dir.path().join("carpet/ground_truth/stain");
    fs::copy(gt.join("000_mask.png"), gt.join("004_mask.png")).unwrap();
    let (e, msg) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::ExtraMask { .. }), "{e:?}");
    assert!(
        msg.contains("carpet/ground_truth/stain/004_mask.png: mask has no matching test image"),
        "{msg}"
    );
    assert!(msg.contains("carpet/test/stain/004.png"), "{msg}");

    // A mask for a defect-free image is extra too.
    fs::remove_file(gt.join("004_mask.png")).unwrap();
    fs::create_dir_all(dir.path().join("carpet/ground_truth/good")).unwrap();
    fs::copy(gt.join("000_mask.png"), dir.path().join("carpet/ground_truth/good/000_mask.png"))
        .unwrap();
    let (e, _) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::ExtraMask { .. }), "{e:?}");
}

#[test]
fn duplicate_mask() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let gt = dir.path().join("carpet/ground_truth/scratch");
    fs::copy(gt.join("000_mask.png"), gt.join("000.png")).unwrap();
    let (e, msg) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::DuplicateMask { .. }), "{e:?}");
    assert!(msg.contains("two masks for test image"), "{msg}");
}

#[test]
fn mask_size_differs() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let mask = dir.path().join("carpet/ground_truth/missing/000_mask.png");
    GrayImage::new(20, 12).save(&mask).unwrap();
    let (e, msg) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::MaskSizeMismatch { .. }), "{e:?}");
    assert!(msg.contains("missing/000_mask.png: mask is 20×12 but its image"), "{msg}");
    assert!(msg.contains("test/missing/000.png is 16×16"), "{msg}");
}

#[test]
fn unreadable_image() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let bad = dir.path().join("carpet/train/good/001.png");
    fs::write(&bad, b"this is not a png").unwrap();
    let (e, msg) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::Decode { .. }), "{e:?}");
    assert!(msg.contains("train/good/001.png: cannot read image"), "{msg}");

    // A file whose header is fine but whose data is cut off fails when it is decoded.
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let img = dir.path().join("carpet/test/good/001.png");
    let bytes = fs::read(&img).unwrap();
    fs::write(&img, &bytes[..bytes.len() / 2]).unwrap();
    let cat = Category::open(dir.path(), "carpet").unwrap();
    let e = ikd_data::Dataset::test(&cat, &ikd_data::Transform::new(16, 16).unwrap(), false)
        .expect_err("a truncated PNG must not decode");
    assert!(matches!(e, DataError::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("test/good/001.png: cannot read image"), "{e}");
}

#[test]
fn non_image_file() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    fs::write(dir.path().join("carpet/test/good/notes.txt"), b"hello").unwrap();
    let (e, msg) = open_err(dir.path(), "carpet");
    assert!(matches!(e, DataError::NotAnImage { .. }), "{e:?}");
    assert!(msg.contains("test/good/notes.txt: not an image file"), "{msg}");
}

#[test]
fn grey_rgba_and_16_bit_become_rgb_like_pil() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    GrayImage::from_pixel(3, 2, Luma([77])).save(p("l.png")).unwrap();
    ImageBuffer::<LumaA<u8>, _>::from_pixel(3, 2, LumaA([90, 10])).save(p("la.png")).unwrap();
    ImageBuffer::<Rgba<u8>, _>::from_pixel(3, 2, Rgba([10, 20, 30, 0]))
        .save(p("rgba.png"))
        .unwrap();
    ImageBuffer::<Rgb<u16>, _>::from_pixel(3, 2, Rgb([0x1234, 0xff00, 0x00ff]))
        .save(p("rgb16.png"))
        .unwrap();
    ImageBuffer::<Luma<u16>, _>::from_pixel(3, 2, Luma([0xabcd])).save(p("l16.png")).unwrap();
    RgbImage::from_pixel(3, 2, Rgb([200, 100, 50])).save(p("rgb.jpg")).unwrap();
    let px = |n: &str| ikd_data::load_rgb(&p(n)).unwrap().get_pixel(1, 1).0;
    assert_eq!(px("l.png"), [77, 77, 77]);
    assert_eq!(px("la.png"), [90, 90, 90]);
    assert_eq!(px("rgba.png"), [10, 20, 30]); // alpha dropped, not composited
    assert_eq!(px("rgb16.png"), [0x12, 0xff, 0x00]);
    assert_eq!(px("l16.png"), [0xab, 0xab, 0xab]);
    let j = px("rgb.jpg");
    assert!(j.iter().zip([200u8, 100, 50]).all(|(a, b)| a.abs_diff(b) <= 3), "{j:?}");
    // Masks as PIL's convert('L').
    let m = ikd_data::to_luma_pil(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
        1,
        1,
        Rgb([10, 200, 30]),
    )));
    assert_eq!(
        m.get_pixel(0, 0).0,
        [((10 * 299 + 200 * 587 + 30 * 114) as f64 / 1000.0).round() as u8]
    );
}

/// A user's folders (made from a synthetic category): normal, abnormal, and masks named like the
/// abnormal images.
fn user_folders(root: &Path, with_masks: usize) -> ikd_data::FolderSpec {
    let cfg = ikd_data::SyntheticConfig {
        categories: vec![ikd_data::synthetic::Texture::Carpet],
        image_size: 16,
        n_train: 10,
        n_test_good: 2,
        n_test_defect: 5,
        seed: 3,
    };
    ikd_data::synthetic::generate(&cfg, root.join("src")).unwrap();
    let src = Category::open(root.join("src"), "carpet").unwrap();
    let (normal, abnormal, masks) = (root.join("ok"), root.join("ng"), root.join("ng_masks"));
    for d in [&normal, &abnormal, &masks] {
        fs::create_dir_all(d).unwrap();
    }
    for (i, p) in src.train.iter().enumerate() {
        fs::copy(p, normal.join(format!("{i:03}.png"))).unwrap();
    }
    for (i, t) in src.test.iter().filter(|t| t.label).enumerate() {
        fs::copy(&t.path, abnormal.join(format!("part_{i}.png"))).unwrap();
        if i < with_masks {
            fs::copy(t.mask.as_ref().unwrap(), masks.join(format!("part_{i}.png"))).unwrap();
        }
    }
    ikd_data::FolderSpec {
        abnormal_dir: Some(abnormal),
        mask_dir: Some(masks),
        ..ikd_data::FolderSpec::new(normal)
    }
}

#[test]
fn folder_mode_splits_normal_images_and_pairs_masks() {
    let dir = tempfile::tempdir().unwrap();
    let spec = user_folders(dir.path(), 5);
    let cat = spec.open(MaskPolicy::default()).unwrap();
    assert_eq!((cat.train.len(), cat.n_test_good(), cat.n_test_defect()), (8, 2, 5));
    assert_eq!(cat.mask_coverage(), MaskCoverage::All);
    assert!(cat.test.iter().filter(|t| t.label).all(|t| t.defect == "abnormal"));
    // The hold-out is fixed by the seed and disjoint from training.
    let again = spec.open(MaskPolicy::default()).unwrap();
    assert_eq!(cat, again);
    for t in cat.test.iter().filter(|t| !t.label) {
        assert!(!cat.train.contains(&t.path));
    }
    let other =
        ikd_data::FolderSpec { seed: 9, ..spec.clone() }.open(MaskPolicy::default()).unwrap();
    assert_eq!(other.train.len(), 8);
}

#[test]
fn folder_mode_without_masks_or_with_some() {
    let dir = tempfile::tempdir().unwrap();
    let spec = user_folders(dir.path(), 0);
    let cat = spec.open(MaskPolicy::default()).unwrap();
    assert_eq!(cat.mask_coverage(), MaskCoverage::None);

    let dir = tempfile::tempdir().unwrap();
    let spec = user_folders(dir.path(), 3);
    let e = spec.open(MaskPolicy::default()).unwrap_err().to_string();
    assert!(e.contains("2 of 5 defective test images have no mask"), "{e}");
    assert!(e.contains("ng/part_3.png") && e.contains("ng/part_4.png"), "{e}");
    assert!(!e.contains("part_2.png,"), "{e}");
    let cat = spec.open(MaskPolicy::AllowMissing).unwrap();
    assert_eq!(cat.mask_coverage(), MaskCoverage::Partial);

    // A mask with no abnormal image of its name is refused, naming both.
    fs::write(dir.path().join("ng_masks/stray.png"), fs::read(&cat.train[0]).unwrap()).unwrap();
    let e = spec.open(MaskPolicy::AllowMissing).unwrap_err().to_string();
    assert!(e.contains("stray.png: mask has no matching test image"), "{e}");
}
