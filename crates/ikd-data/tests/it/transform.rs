//! Parity with PIL's resamplers (fixtures made with Pillow) and the transform pipeline.

use candle_core::{Device, Tensor};
use ikd_data::{normalize_chw, resize_rgb, Filter, Transform, IMAGENET_MEAN, IMAGENET_STD};
use image::{DynamicImage, GrayImage, Luma};

use crate::common::fixtures;

fn fixture(name: &str) -> Vec<f32> {
    let path = fixtures().join("data/chelsea_resized.safetensors");
    let map = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let t: &Tensor = map.get(name).unwrap_or_else(|| panic!("{name} not in {path:?}"));
    assert_eq!(t.dims(), &[3, 64, 64]);
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Largest per-pixel difference in 8-bit units before normalisation.
fn max_diff_255(ours: &[f32], pil: &[f32]) -> f32 {
    let hw = 64 * 64;
    ours.iter()
        .zip(pil)
        .enumerate()
        .map(|(i, (a, b))| (a - b).abs() * IMAGENET_STD[i / hw] * 255.0)
        .fold(0.0, f32::max)
}

fn chelsea() -> image::RgbImage {
    let img = ikd_data::load_rgb(&fixtures().join("data/chelsea.png")).unwrap();
    assert_eq!(img.dimensions(), (451, 300));
    img
}

#[test]
fn lanczos_matches_pil() {
    let ours = normalize_chw(&resize_rgb(&chelsea(), 64, 64, Filter::Lanczos3).unwrap());
    let d = max_diff_255(&ours, &fixture("resize64_lanczos_normalized"));
    eprintln!("Lanczos: max |ours - PIL| = {d:.3}/255");
    assert!(d <= 2.0, "Lanczos differs from PIL by {d}/255");
}

#[test]
fn bilinear_matches_pil() {
    let ours = normalize_chw(&resize_rgb(&chelsea(), 64, 64, Filter::Bilinear).unwrap());
    let d = max_diff_255(&ours, &fixture("resize64_bilinear_normalized"));
    eprintln!("bilinear: max |ours - PIL| = {d:.3}/255");
    assert!(d <= 2.0, "bilinear differs from PIL by {d}/255");
}

#[test]
fn nearest_matches_pil() {
    let ours = normalize_chw(&resize_rgb(&chelsea(), 64, 64, Filter::Nearest).unwrap());
    let d = max_diff_255(&ours, &fixture("resize64_nearest_normalized"));
    eprintln!("nearest: max |ours - PIL| = {d:.3}/255");
    assert!(d <= 2.0, "nearest differs from PIL by {d}/255");
}

#[test]
fn apply_image_is_the_paper_pipeline() {
    // Transform(64, 64) on the fixture = PIL's Lanczos resize + normalisation.
    let t = Transform::new(64, 64).unwrap();
    let x = t.apply_image(&DynamicImage::ImageRgb8(chelsea()), &Device::Cpu).unwrap();
    assert_eq!(x.dims(), &[3, 64, 64]);
    let ours = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(max_diff_255(&ours, &fixture("resize64_lanczos_normalized")) <= 2.0);

    // A crop takes the centre: 64 → 60 keeps rows/columns 2..62.
    let t = Transform::new(64, 60).unwrap();
    let c = t.prepare_rgb(&chelsea()).unwrap();
    let full = resize_rgb(&chelsea(), 64, 64, Filter::Lanczos3).unwrap();
    assert_eq!(c.dimensions(), (60, 60));
    assert_eq!(c.get_pixel(0, 0), full.get_pixel(2, 2));
    assert_eq!(c.get_pixel(59, 59), full.get_pixel(61, 61));
    // torchvision rounds half to even: 65 → 62 leaves 3 rows, top = round(1.5) = 2.
    let t = Transform::new(65, 62).unwrap();
    let full = resize_rgb(&chelsea(), 65, 65, Filter::Lanczos3).unwrap();
    let c = t.prepare_rgb(&chelsea()).unwrap();
    assert_eq!(c.get_pixel(0, 0), full.get_pixel(2, 2));
}

#[test]
fn normalisation_values() {
    let img = image::RgbImage::from_pixel(1, 1, image::Rgb([0, 128, 255]));
    let v = normalize_chw(&img);
    for c in 0..3 {
        let x = [0.0, 128.0, 255.0][c] / 255.0;
        assert!((v[c] - (x - IMAGENET_MEAN[c]) / IMAGENET_STD[c]).abs() < 1e-6);
    }
}

#[test]
fn masks_use_nearest_and_are_binarised() {
    // A 4×4 mask with one bright 2×2 block and one grey (≤ half scale) block.
    let mut m = GrayImage::new(4, 4);
    for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        m.put_pixel(x, y, Luma([255]));
    }
    for (x, y) in [(2, 2), (3, 2), (2, 3), (3, 3)] {
        m.put_pixel(x, y, Luma([127]));
    }
    let t = Transform::new(8, 8).unwrap();
    let p = t.prepare_mask(&m).unwrap();
    assert_eq!(p.get_pixel(3, 3).0, [255]);
    assert_eq!(p.get_pixel(4, 3).0, [0]);
    assert_eq!(p.get_pixel(7, 7).0, [0]);
    let x = t.apply_mask(&m, &Device::Cpu).unwrap();
    assert_eq!(x.dims(), &[1, 8, 8]);
    let s = x.sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(s, 16.0);
}

#[test]
fn bad_sizes_are_errors() {
    assert!(Transform::new(64, 65).is_err());
    assert!(Transform::new(64, 0).is_err());
    assert!(resize_rgb(&image::RgbImage::new(0, 3), 4, 4, Filter::Lanczos3).is_err());
    assert!(ikd_data::center_crop(&GrayImage::new(4, 4), 5).is_err());
}
