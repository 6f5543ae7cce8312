//! Anomaly maps on disk: 32-bit float TIFF (the layout MVTec AD's evaluation script reads) and PNG.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// A single-channel anomaly map, row-major.
///
/// ```
/// let m = ikd::maps::AnomalyMap { width: 2, height: 1, data: vec![0.0, 1.0] };
/// assert_eq!(m.max(), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyMap {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` scores, row by row.
    pub data: Vec<f32>,
}

impl AnomalyMap {
    /// The largest score (the default image score); `-inf` for an empty map.
    ///
    /// ```
    /// let m = ikd::maps::AnomalyMap { width: 1, height: 2, data: vec![3.0, -1.0] };
    /// assert_eq!(m.max(), 3.0);
    /// ```
    pub fn max(&self) -> f32 {
        self.data.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

/// Writes `map` as a single-channel 32-bit float TIFF, atomically (temporary file, then rename).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("a.tiff");
/// let m = ikd::maps::AnomalyMap { width: 2, height: 2, data: vec![0.0, 0.5, 1.0, 2.0] };
/// ikd::maps::write_tiff(&p, &m).unwrap();
/// assert_eq!(ikd::maps::read_map(&p).unwrap(), m);
/// ```
pub fn write_tiff(path: &Path, map: &AnomalyMap) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let encoding =
        |e: tiff::TiffError| Error::Internal(format!("encoding {}: {e}", path.display()));
    let mut enc = tiff::encoder::TiffEncoder::new(&mut bytes).map_err(encoding)?;
    enc.write_image::<tiff::encoder::colortype::Gray32Float>(map.width, map.height, &map.data)
        .map_err(encoding)?;
    Ok(ikd_io::atomic_write(path, bytes.get_ref())?)
}

/// Reads an anomaly map: a TIFF (32-bit float, or 8/16-bit integer) or a grey PNG (values as they are).
/// Multi-channel files are an error that names the file.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("a.png");
/// image::GrayImage::from_raw(2, 1, vec![0, 255]).unwrap().save(&p).unwrap();
/// assert_eq!(ikd::maps::read_map(&p).unwrap().data, vec![0.0, 255.0]);
/// ```
pub fn read_map(path: &Path) -> Result<AnomalyMap> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext == "tif" || ext == "tiff" {
        read_tiff(path)
    } else {
        let img = image::open(path).map_err(|e| Error::bad_file(path, e.to_string()))?;
        let (width, height) = (img.width(), img.height());
        let data = match img {
            image::DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().map(f32::from).collect(),
            image::DynamicImage::ImageLuma16(b) => {
                b.into_raw().into_iter().map(f32::from).collect()
            }
            other => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "an anomaly map must have one channel, this one is {:?}",
                        other.color()
                    ),
                ))
            }
        };
        Ok(AnomalyMap { width, height, data })
    }
}

fn read_tiff(path: &Path) -> Result<AnomalyMap> {
    use tiff::decoder::{Decoder, DecodingResult};
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: tiff::TiffError| Error::bad_file(path, e.to_string());
    let mut dec = Decoder::new(BufReader::new(file)).map_err(bad)?;
    let (width, height) = dec.dimensions().map_err(bad)?;
    let n = (width as usize) * (height as usize);
    let data: Vec<f32> = match dec.read_image().map_err(bad)? {
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::U8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f32::from).collect(),
        _ => return Err(Error::bad_file(path, "unsupported TIFF sample format".into())),
    };
    if data.len() != n {
        return Err(Error::bad_file(
            path,
            format!(
                "expected one channel of {width}×{height} samples, found {} values",
                data.len()
            ),
        ));
    }
    Ok(AnomalyMap { width, height, data })
}

/// A map of the centre crop, put back into the frame of the resized image (the border the crop cut
/// off gets the map's minimum) and resized bilinearly (half-pixel centres) to `w × h`.
pub(crate) fn to_original_size(
    map: &AnomalyMap,
    load_size: u32,
    w: u32,
    h: u32,
    device: &Device,
) -> Result<AnomalyMap> {
    let side = map.width as usize;
    let load = load_size as usize;
    let framed = if load == side {
        map.data.clone()
    } else {
        let min = map.data.iter().copied().fold(f32::INFINITY, f32::min);
        let off = (load - side) / 2;
        let mut out = vec![min; load * load];
        for y in 0..side {
            out[(y + off) * load + off..(y + off) * load + off + side]
                .copy_from_slice(&map.data[y * side..(y + 1) * side]);
        }
        out
    };
    let t = Tensor::from_vec(framed, (1, 1, load, load), device)?;
    let r = ikd_hrnet::resize_bilinear_half_pixel(&t, h as usize, w as usize)?;
    Ok(AnomalyMap { width: w, height: h, data: r.flatten_all()?.to_vec1::<f32>()? })
}
