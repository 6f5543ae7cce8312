//! The synthetic generator: layout, determinism, and that it cannot be solved blindly.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ikd_data::synthetic::{generate, render, DefectKind, SyntheticConfig, Texture, MARKER};
use ikd_data::{image_dimensions, load_mask, Category, DataError};
use proptest::prelude::*;

use crate::common::auroc;

fn all_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn deterministic_for_a_seed() {
    let cfg = SyntheticConfig {
        categories: Texture::ALL.to_vec(),
        image_size: 24,
        n_train: 2,
        n_test_good: 1,
        n_test_defect: 5,
        seed: 5,
    };
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(&cfg, a.path()).unwrap();
    // Same output on one thread as on the default pool.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| generate(&cfg, b.path()))
        .unwrap();
    generate(&SyntheticConfig { seed: 6, ..cfg.clone() }, c.path()).unwrap();
    let (fa, fb, fc) = (all_files(a.path()), all_files(b.path()), all_files(c.path()));
    assert_eq!(fa.len(), 4 * (2 + 1 + 5 + 5 + 1));
    assert_eq!(fa, fb);
    assert_eq!(fa.keys().collect::<Vec<_>>(), fc.keys().collect::<Vec<_>>());
    let differing = fa.iter().filter(|(k, v)| fc[*k] != **v).count();
    assert!(differing >= fa.len() - 4, "another seed changes the images");
    // Images differ from one another within a split.
    assert_ne!(fa["carpet/train/good/000.png"], fa["carpet/train/good/001.png"]);
    // Every kind of defect is present.
    for k in DefectKind::ALL {
        assert!(fa.contains_key(&format!("tile/test/{}/000.png", k.name())));
        assert!(fa.contains_key(&format!("tile/ground_truth/{}/000_mask.png", k.name())));
    }
}

#[test]
fn regenerating_replaces_only_generated_folders() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig {
        categories: vec![Texture::Wood],
        image_size: 16,
        n_train: 1,
        n_test_good: 1,
        n_test_defect: 1,
        seed: 0,
    };
    generate(&cfg, dir.path()).unwrap();
    assert!(dir.path().join("wood").join(MARKER).is_file());
    generate(&SyntheticConfig { n_train: 2, ..cfg.clone() }, dir.path()).unwrap();
    assert_eq!(Category::open(dir.path(), "wood").unwrap().train.len(), 2);
    // A folder the generator did not write is never replaced.
    fs::create_dir_all(dir.path().join("grid/train/good")).unwrap();
    let e = generate(&SyntheticConfig { categories: vec![Texture::Grid], ..cfg }, dir.path())
        .unwrap_err();
    assert!(matches!(e, DataError::AlreadyExists { .. }), "{e:?}");
    assert!(dir.path().join("grid/train/good").is_dir());
    // No staging folder is left behind.
    let hidden = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(hidden, 0);
}

#[test]
fn bad_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ok = SyntheticConfig {
        image_size: 16,
        n_train: 1,
        n_test_good: 0,
        n_test_defect: 0,
        ..Default::default()
    };
    for bad in [
        SyntheticConfig { image_size: 8, ..ok.clone() },
        SyntheticConfig { n_train: 0, ..ok.clone() },
        SyntheticConfig { categories: vec![], ..ok.clone() },
        SyntheticConfig { categories: vec![Texture::Grid, Texture::Grid], ..ok.clone() },
    ] {
        let e = generate(&bad, dir.path()).unwrap_err();
        assert!(matches!(e, DataError::Setting { .. }), "{e:?}");
        assert!(e.to_string().starts_with("invalid setting "), "{e}");
    }
    assert!("felt".parse::<Texture>().is_err());
}

/// A method that ignores the image cannot do better than chance: neither the defect positions
/// (a position prior learnt on one seed, applied to another) nor global image statistics (mean
/// brightness) separate anomalous from normal.
#[test]
fn blind_methods_score_near_chance() {
    let size = 32u32;
    let n = 40;
    for texture in Texture::ALL {
        // Position prior from seed 1.
        let mut prior = vec![0f64; (size * size) as usize];
        for i in 0..n {
            let kind = DefectKind::ALL[i % 5];
            let (_, m) = render(texture, size, 1, 2, Some(kind), i / 5);
            for (p, v) in prior.iter_mut().zip(m.unwrap().as_raw()) {
                *p += f64::from(*v > 127);
            }
        }
        // Evaluate on seed 2: defective images' pixels with their masks, plus good images.
        let (mut scores, mut labels) = (Vec::new(), Vec::new());
        let (mut img_scores, mut img_labels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let kind = DefectKind::ALL[i % 5];
            let (img, m) = render(texture, size, 2, 2, Some(kind), i / 5);
            for (p, v) in prior.iter().zip(m.unwrap().as_raw()) {
                scores.push(*p);
                labels.push(*v > 127);
            }
            let mean = img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>();
            img_scores.push(mean);
            img_labels.push(true);
            let (good, _) = render(texture, size, 2, 1, None, i);
            img_scores.push(good.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>());
            img_labels.push(false);
        }
        let pixel = auroc(&scores, &labels);
        let image = auroc(&img_scores, &img_labels);
        eprintln!("{texture}: position-prior pixel AUROC {pixel:.3}, mean-brightness image AUROC {image:.3}");
        assert!((0.4..=0.62).contains(&pixel), "{texture}: position prior AUROC {pixel}");
        assert!((0.3..=0.7).contains(&image), "{texture}: mean-brightness AUROC {image}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Any generated category reads back: every defective image has a mask of its size, with at
    /// least one annotated pixel; defect-free images have none; counts are as configured.
    #[test]
    fn any_generated_category_reads_back(
        size in 16u32..40,
        n_train in 1usize..3,
        n_test_good in 0usize..3,
        n_test_defect in 0usize..7,
        seed in any::<u64>(),
        which in 0usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let texture = Texture::ALL[which];
        let cfg = SyntheticConfig {
            categories: vec![texture], image_size: size, n_train, n_test_good, n_test_defect, seed,
        };
        let made = generate(&cfg, dir.path()).unwrap();
        prop_assert_eq!(made.len(), 1);
        let cat = Category::open(dir.path(), texture.name()).unwrap();
        prop_assert_eq!(cat.train.len(), n_train);
        prop_assert_eq!(cat.n_test_good(), n_test_good);
        prop_assert_eq!(cat.n_test_defect(), n_test_defect);
        for p in &cat.train {
            prop_assert_eq!(image_dimensions(p).unwrap(), (size, size));
        }
        for item in &cat.test {
            prop_assert_eq!(image_dimensions(&item.path).unwrap(), (size, size));
            prop_assert_eq!(item.mask.is_some(), item.label);
            if let Some(m) = &item.mask {
                let mask = load_mask(m).unwrap();
                prop_assert_eq!(mask.dimensions(), (size, size));
                prop_assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
                prop_assert!(mask.pixels().any(|p| p.0[0] == 255), "empty mask {:?}", m);
            }
        }
    }
}
