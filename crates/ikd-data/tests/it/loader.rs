//! The prefetching training loader: the same batches as the in-memory dataset, bounded cache,
//! errors that name the file, and a consumer that may stop at any batch.

use candle_core::Device;
use ikd_data::{Category, Dataset, Loader, LoaderOptions, Order, Transform};

fn flat(b: &ikd_data::Batch) -> Vec<f32> {
    b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn category(dir: &std::path::Path, n_train: usize) -> Category {
    let cfg = ikd_data::SyntheticConfig {
        categories: vec![ikd_data::synthetic::Texture::Carpet],
        image_size: 24,
        n_train,
        n_test_good: 1,
        n_test_defect: 1,
        seed: 3,
    };
    ikd_data::synthetic::generate(&cfg, dir).unwrap();
    Category::open(dir, "carpet").unwrap()
}

#[test]
fn batches_equal_the_in_memory_datasets_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let cat = category(dir.path(), 7);
    let t = Transform::new(20, 16).unwrap();
    let dev = Device::Cpu;
    let data = Dataset::train(&cat, &t, false).unwrap();
    for cache_bytes in [0, 2 * 16 * 16 * 3, u64::MAX] {
        let loader = Loader::train(&cat, &t, LoaderOptions { prefetch: 1, cache_bytes }).unwrap();
        assert_eq!(loader.len(), 7);
        for epoch in 0..3 {
            let order = Order::Shuffled { seed: 5, epoch };
            for start in [0, 2] {
                let mut want = data.batches(3, order, &dev).unwrap();
                want.seek(start);
                let got = loader.epoch(3, order, start, &dev).unwrap();
                assert_eq!(got.len(), want.len());
                let (mut n, mut got_n) = (0, 0);
                for (g, w) in got.zip(want) {
                    let (g, w) = (g.unwrap(), w.unwrap());
                    assert_eq!(g.indices, w.indices);
                    assert_eq!(g.labels, w.labels);
                    assert!(g.masks.is_none());
                    assert_eq!(flat(&g), flat(&w), "epoch {epoch} batch {n}");
                    n += 1;
                    got_n += g.indices.len();
                }
                assert_eq!(got_n, 7 - 3 * start.min(3));
            }
        }
        // the cache holds what its budget allows, no more
        let cached = loader.cached();
        match cache_bytes {
            0 => assert_eq!(cached, 0),
            u64::MAX => assert_eq!(cached, 7),
            _ => assert_eq!(cached, 2),
        }
    }
}

#[test]
fn a_consumer_may_stop_at_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cat = category(dir.path(), 9);
    let t = Transform::new(24, 24).unwrap();
    let loader = Loader::train(&cat, &t, LoaderOptions { prefetch: 1, cache_bytes: 0 }).unwrap();
    for taken in 0..4 {
        let mut it = loader.epoch(2, Order::Sequential, 0, &Device::Cpu).unwrap();
        for _ in 0..taken {
            it.next().unwrap().unwrap();
        }
        drop(it); // returns: the worker blocked on a full channel ends
    }
    assert!(loader.epoch(0, Order::Sequential, 0, &Device::Cpu).is_err());
    let bad = LoaderOptions { prefetch: 0, ..Default::default() };
    let err = Loader::train(&cat, &t, bad).unwrap_err().to_string();
    assert!(err.contains("prefetch"), "{err}");
}

#[test]
fn a_file_that_is_not_an_image_fails_before_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cat = category(dir.path(), 4);
    std::fs::write(&cat.train[2], b"not an image at all").unwrap();
    let t = Transform::new(24, 24).unwrap();
    let err = Loader::train(&cat, &t, LoaderOptions::default()).unwrap_err().to_string();
    assert!(err.contains(&cat.train[2].display().to_string()), "{err}");
}

#[test]
fn an_undecodable_image_ends_the_epoch_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cat = category(dir.path(), 6);
    // a PNG whose header is fine and whose pixel data is cut: only decoding finds it
    let bytes = std::fs::read(&cat.train[3]).unwrap();
    std::fs::write(&cat.train[3], &bytes[..bytes.len() / 2]).unwrap();
    let t = Transform::new(24, 24).unwrap();
    let loader = Loader::train(&cat, &t, LoaderOptions::default()).unwrap();
    let results: Vec<_> = loader.epoch(2, Order::Sequential, 0, &Device::Cpu).unwrap().collect();
    assert_eq!(results.len(), 2, "the epoch ends at the failing batch");
    assert!(results[0].is_ok());
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(err.contains(&cat.train[3].display().to_string()), "{err}");
}
