//! The upload decoder on hostile bytes: arbitrary bytes, bytes behind each format's magic number,
//! and valid PNG, BMP and TIFF files with bytes changed, cut or inserted give an image or an error,
//! never a panic. `ikd_data::decode_image` is called directly (the service's `decode` also catches
//! a decoder's panic; this checks that it never needs to).

use std::io::Cursor;

use proptest::prelude::*;

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(13, 7, |x, y| image::Rgb([x as u8 * 19, y as u8 * 37, 200]));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// Decodes with the library's decoder and the service's; both must return (not panic) and agree.
fn check(bytes: &[u8]) {
    let direct = ikd_data::decode_image(bytes);
    let served = ikd_serve::decode(bytes);
    match (&direct, &served) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(msg)) => assert!(!msg.is_empty()),
        // the service refuses what has no pixels
        (Ok(a), Err(_)) => assert!(a.width() == 0 || a.height() == 0),
        (Err(e), Ok(_)) => panic!("the service decoded what the library refused: {e}"),
    }
}

const MAGIC: [&[u8]; 6] = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"BM",
    b"II*\0",
    b"MM\0*",
    b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
        prop_assert!(ikd_serve::decode(&bytes).is_err() || bytes.len() > 8);
    }

    #[test]
    fn bytes_behind_a_magic_number_never_panic(
        magic in 0..MAGIC.len(),
        tail in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = MAGIC[magic].to_vec();
        bytes.extend(tail);
        check(&bytes);
    }

    #[test]
    fn mutated_images_never_panic(
        format in 0..3usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..12),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let format = [image::ImageFormat::Png, image::ImageFormat::Bmp, image::ImageFormat::Tiff][format];
        let mut bytes = encoded(format);
        for (at, value, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = value,
                1 => bytes.insert(i, value),
                _ => { bytes.remove(i); }
            }
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        check(&bytes);
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let png = encoded(image::ImageFormat::Png);
    assert!(ikd_serve::decode(&png).is_ok());
    let e = ikd_serve::decode(b"GIF89a\x01\x00\x01\x00").unwrap_err();
    assert!(e.contains("unsupported image format") && e.contains("PNG, JPEG, BMP or TIFF"), "{e}");
    let e = ikd_serve::decode(&png[..png.len() / 2]).unwrap_err();
    assert!(e.starts_with("corrupt or truncated image"), "{e}");
    assert!(ikd_serve::decode(&[]).unwrap_err().starts_with("empty"));
    // a BMP header claiming 10000×10000 pixels is refused before any pixel is decoded
    let mut huge = encoded(image::ImageFormat::Bmp);
    huge[18..22].copy_from_slice(&10_000i32.to_le_bytes());
    huge[22..26].copy_from_slice(&10_000i32.to_le_bytes());
    let e = ikd_serve::decode(&huge).unwrap_err();
    assert!(e.contains("10000×10000 pixels, more than the 64 million"), "{e}");
}
