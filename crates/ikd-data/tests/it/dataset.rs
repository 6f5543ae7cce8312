//! The in-memory cache and the batch iterator.

use candle_core::Device;
use ikd_data::{epoch_permutation, Category, Dataset, Order, Split, Transform};

use crate::common::tiny_dataset;

#[test]
fn train_and_test_batches() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let cat = Category::open(dir.path(), "carpet").unwrap();
    let t = Transform::new(20, 16).unwrap();
    let dev = Device::Cpu;

    let train = Dataset::train(&cat, &t, false).unwrap();
    assert_eq!(train.split(), Split::Train);
    assert_eq!(train.len(), 3);
    let batches: Vec<_> =
        train.batches(2, Order::Sequential, &dev).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].images.dims(), &[2, 3, 16, 16]);
    assert_eq!(batches[1].images.dims(), &[1, 3, 16, 16]);
    assert!(batches[0].masks.is_none());
    assert_eq!(batches[1].indices, vec![2]);
    // Tensor values are the normalised cached pixels.
    let x = batches[0].images.to_vec3::<f32>().err();
    assert!(x.is_some(), "4-d tensor");
    let v = batches[0].images.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v, ikd_data::normalize_chw(train.image(1)));

    let test = Dataset::test(&cat, &t, false).unwrap();
    assert_eq!(test.len(), 7);
    let b = test.batch(&(0..7).collect::<Vec<_>>(), &dev).unwrap();
    let masks = b.masks.unwrap();
    assert_eq!(masks.dims(), &[7, 1, 16, 16]);
    for (k, item) in cat.test.iter().enumerate() {
        assert_eq!(b.labels[k], item.label);
        assert_eq!(test.path(k), item.path);
        assert_eq!(test.defect(k), item.defect);
        let m = masks.get(k).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(m.iter().all(|&v| v == 0.0 || v == 1.0));
        let area: f32 = m.iter().sum();
        if item.label {
            assert!(area > 0.0, "{:?} has an empty mask", item.path);
            assert_eq!(
                area as usize,
                test.mask(k).unwrap().pixels().filter(|p| p.0[0] == 255).count()
            );
        } else {
            assert_eq!(area, 0.0);
            assert!(test.mask(k).is_none());
        }
    }
    assert!(test.batch(&[], &dev).is_err());
    assert!(test.batch(&[7], &dev).is_err());
    assert!(test.batches(0, Order::Sequential, &dev).is_err());
}

#[test]
fn shuffling_is_a_reproducible_permutation_per_epoch() {
    let p0 = epoch_permutation(50, 9, 0);
    let p1 = epoch_permutation(50, 9, 1);
    assert_eq!(p0, epoch_permutation(50, 9, 0));
    assert_ne!(p0, p1);
    assert_ne!(p0, epoch_permutation(50, 10, 0));
    let mut s = p0.clone();
    s.sort();
    assert_eq!(s, (0..50).collect::<Vec<_>>());
    assert_ne!(p0, (0..50).collect::<Vec<_>>());
    assert!(epoch_permutation(0, 1, 1).is_empty());
    // Every position is reachable: over many epochs each index lands first at least once.
    let mut first = [false; 5];
    for e in 0..200 {
        first[epoch_permutation(5, 3, e)[0]] = true;
    }
    assert!(first.iter().all(|&f| f));
    // Pinned values: the permutation must not change between releases (checkpoints resume it).
    assert_eq!(epoch_permutation(6, 0, 0), PINNED_SEED0_EPOCH0.to_vec());
}

/// `epoch_permutation(6, 0, 0)` as first computed by this crate (a regression pin, not a
/// reference from elsewhere).
const PINNED_SEED0_EPOCH0: [usize; 6] = [4, 1, 5, 2, 3, 0];

#[test]
fn resuming_mid_epoch_gives_the_same_batches() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), true);
    let cat = Category::open(dir.path(), "grid").unwrap();
    let t = Transform::new(16, 16).unwrap();
    let data = Dataset::test(&cat, &t, false).unwrap();
    let dev = Device::Cpu;
    let order = Order::Shuffled { seed: 4, epoch: 2 };
    let full: Vec<Vec<usize>> =
        data.batches(2, order, &dev).unwrap().map(|b| b.unwrap().indices).collect();
    assert_eq!(full.len(), 4);
    let mut it = data.batches(2, order, &dev).unwrap();
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.indices, full[0]);
    let saved = (serde_json::to_string(&order).unwrap(), it.position());
    // "Restart": rebuild the iterator from the saved state.
    let order2: Order = serde_json::from_str(&saved.0).unwrap();
    let mut it2 = data.batches(2, order2, &dev).unwrap();
    it2.seek(saved.1);
    assert_eq!(it2.len(), 3);
    let rest: Vec<Vec<usize>> = it2.map(|b| b.unwrap().indices).collect();
    assert_eq!(rest, full[1..].to_vec());
    // nth skips without building.
    let mut it3 = data.batches(2, order, &dev).unwrap();
    assert_eq!(it3.nth(3).unwrap().unwrap().indices, full[3]);
    assert!(it3.next().is_none());
}

#[test]
fn files_dataset_for_prediction() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), false);
    let cat = Category::open(dir.path(), "carpet").unwrap();
    let files: Vec<_> = cat.test.iter().map(|i| i.path.clone()).collect();
    let d = Dataset::files(&files, &Transform::new(16, 8).unwrap(), false).unwrap();
    assert_eq!(d.split(), Split::Files);
    assert_eq!(d.len(), files.len());
    let b = d.batch(&[0, 1], &Device::Cpu).unwrap();
    assert_eq!(b.images.dims(), &[2, 3, 8, 8]);
    assert!(b.masks.is_none());
}
