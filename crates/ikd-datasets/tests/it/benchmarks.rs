//! Every benchmark's download and conversion, on small archives built here in each dataset's real
//! layout (zip or tar, BMP/JPG as the real one) and served on 127.0.0.1 — with the real manifests
//! of `datasets/`, only the checksum, size and counts replaced by the test archive's.

use std::collections::HashMap;
use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ikd_data::Category;
use ikd_datasets::DatasetError;
use ikd_datasets::{
    fetch_dataset, manifest_path, CategoryCounts, Conversion, Counts, FetchOptions, Manifest,
    DATASETS,
};
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use sha2::Digest;

use crate::common::datasets_dir;
use crate::download::{listing, Route, Server};

/// One file of an archive: path and bytes.
type Tree = Vec<(String, Vec<u8>)>;

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    img.write_to(&mut c, format).unwrap();
    c.into_inner()
}

/// An 8×8 image, its colour seeded by `k`.
fn image(k: u8, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([k.wrapping_mul(37), x as u8 * 20, y as u8 * 20])
    });
    encode(DynamicImage::ImageRgb8(img), format)
}

/// An 8×8 mask with `value` in the rectangle `x0..x1` × `y0..y1`, else 0.
fn mask(value: u8, (x0, x1, y0, y1): (u32, u32, u32, u32), format: ImageFormat) -> Vec<u8> {
    let m = GrayImage::from_fn(8, 8, |x, y| {
        image::Luma([if (x0..x1).contains(&x) && (y0..y1).contains(&y) { value } else { 0 }])
    });
    encode(DynamicImage::ImageLuma8(m), format)
}

fn png(k: u8) -> Vec<u8> {
    image(k, ImageFormat::Png)
}

#[derive(Clone, Copy)]
enum Kind {
    Tar,
    TarGz,
    TarXz,
    Zip,
}

fn archive(tree: &Tree, kind: Kind) -> Vec<u8> {
    fn tar_into<W: Write>(w: W, tree: &Tree) -> W {
        let mut b = tar::Builder::new(w);
        for (path, data) in tree {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }
    match kind {
        Kind::Tar => tar_into(Vec::new(), tree),
        Kind::TarGz => {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            tar_into(gz, tree).finish().unwrap()
        }
        Kind::TarXz => {
            tar_into(liblzma::write::XzEncoder::new(Vec::new(), 1), tree).finish().unwrap()
        }
        Kind::Zip => {
            let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (path, data) in tree {
                z.start_file(path.as_str(), o).unwrap();
                z.write_all(data).unwrap();
            }
            z.finish().unwrap().into_inner()
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The real manifest of `dataset`, made to fit the test archive `bytes`: its checksum and size,
/// and these categories with their counts.
fn manifest(dataset: &str, bytes: &[u8], categories: &[(&str, Counts)]) -> Manifest {
    let mut m = Manifest::load(manifest_path(&datasets_dir(), dataset).unwrap()).unwrap();
    m.sha256 = sha256(bytes);
    m.size = Some(bytes.len() as u64);
    m.categories = categories
        .iter()
        .map(|(n, c)| CategoryCounts { name: n.to_string(), counts: Some(*c) })
        .collect();
    let mut t = Counts::default();
    for (_, c) in categories {
        t = Counts {
            train: t.train + c.train,
            test_good: t.test_good + c.test_good,
            test_defect: t.test_defect + c.test_defect,
        };
    }
    m.totals = Some(t);
    m
}

fn counts(train: usize, test_good: usize, test_defect: usize) -> Counts {
    Counts { train, test_good, test_defect }
}

fn opts(server: &Server, name: &str) -> FetchOptions {
    FetchOptions {
        url: Some(server.url(name)),
        progress: false,
        retries: 0,
        retry_delay: Duration::from_millis(10),
        keep_archive: true,
    }
}

/// Serves `bytes` as `m.file_name` and fetches it into a fresh folder: (tempdir, dest, result).
fn fetch(
    m: &Manifest,
    bytes: &[u8],
) -> (tempfile::TempDir, PathBuf, ikd_datasets::Result<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data");
    let server = Server::start(HashMap::from([(
        m.file_name.clone(),
        Route { body: bytes.to_vec(), ..Default::default() },
    )]));
    let r = fetch_dataset(m, &dest, &opts(&server, &m.file_name));
    (dir, dest, r)
}

fn open(root: &Path, name: &str) -> Category {
    Category::open_with(root, name, ikd_data::MaskPolicy::Required).unwrap()
}

fn split(c: &Category) -> (usize, usize, usize) {
    (c.train.len(), c.n_test_good(), c.n_test_defect())
}

fn mask_values(p: &Path) -> Vec<u8> {
    let mut v: Vec<u8> = ikd_data::load_mask(p).unwrap().into_raw();
    v.sort();
    v.dedup();
    v
}

// ------------------------------------------------------------------------------------------

#[test]
fn the_manifests_carry_the_published_urls_and_checksums() {
    let expect = [
        ("mvtec", "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/420938113-1629952094/mvtec_anomaly_detection.tar.xz", "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d", None),
        ("mvtec_loco", "https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/430647091-1646842701/mvtec_loco_anomaly_detection.tar.xz", "9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687", Some(Conversion::Loco)),
        ("mvtec_ad2", "https://www.mydrive.ch/shares/121573/7f68fe2c4f7c2ceaa08f463aaeb2f414/download/466712769-1743422799/mvtec_ad_2.tar.gz", "c0ded99ef32bfc8e352d52beb44515e5b292b8598cb963aadfa91ca0763505e4", Some(Conversion::MvtecAd2)),
        ("visa", "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar", "2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362", Some(Conversion::Visa)),
        ("btad", "https://avires.dimi.uniud.it/papers/btad/btad.zip", "461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a", Some(Conversion::Btad)),
        ("kolektor", "https://go.vicos.si/kolektorsdd", "65dc621693418585de9c4467d1340ea7958a6181816f0dc2883a1e8b61f9d4dc", Some(Conversion::Kolektor)),
    ];
    assert_eq!(expect.len(), DATASETS.len());
    for (name, url, sha, conversion) in expect {
        let m = Manifest::load(manifest_path(&datasets_dir(), name).unwrap()).unwrap();
        assert_eq!(m.url, url, "{name}");
        assert_eq!(m.sha256, sha, "{name}");
        assert_eq!(m.conversion, conversion, "{name}");
        assert!(m.url_env.is_some(), "{name}: a mirror can be set");
        assert!(!m.layout.source.is_empty(), "{name}: the layout is described");
    }
    let file =
        |n: &str| Manifest::load(manifest_path(&datasets_dir(), n).unwrap()).unwrap().file_name;
    assert_eq!(file("kolektor"), "KolektorSDD.zip");
    assert_eq!(file("btad"), "btad.zip");
    assert_eq!(file("ad2"), "mvtec_ad_2.tar.gz");
    let visa = Manifest::load(manifest_path(&datasets_dir(), "visa").unwrap()).unwrap();
    assert_eq!(
        visa.file_checksums["split_csv/1cls.csv"],
        "a48557e6033318cb90556f706196bc9d247a776a23ea51aecee5a80dd0332995"
    );
    let t = visa.totals.unwrap();
    assert_eq!((t.train, t.test_good, t.test_defect, t.total()), (8659, 962, 1200, 10_821));
    let pcb3 = visa.categories.iter().find(|c| c.name == "pcb3").unwrap();
    assert_eq!(pcb3.counts, Some(counts(905, 101, 100)));
    let btad = Manifest::load(manifest_path(&datasets_dir(), "btad").unwrap()).unwrap();
    assert_eq!(btad.layout.normal, "ok");
    let e = manifest_path(&datasets_dir(), "mpdd").unwrap_err();
    assert!(matches!(e, DatasetError::UnknownDataset { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("folder mode") && !e.contains("--"), "{e}");
}

fn visa_tree(csv_extra: &str) -> Tree {
    let mut t: Tree = Vec::new();
    let mut csv = String::from("object,split,label,image,mask\n");
    let mut k = 0;
    for (obj, n_train, n_good, n_bad) in [("candle", 3, 1, 2), ("pcb1", 2, 1, 1)] {
        for i in 0..n_train + n_good {
            let p = format!("{obj}/Data/Images/Normal/{i:04}.JPG");
            let split = if i < n_train { "train" } else { "test" };
            csv.push_str(&format!("{obj},{split},normal,{p},\n"));
            k += 1;
            t.push((p, image(k, ImageFormat::Jpeg)));
        }
        for i in 0..n_bad {
            let p = format!("{obj}/Data/Images/Anomaly/{i:03}.JPG");
            let m = format!("{obj}/Data/Masks/Anomaly/{i:03}.png");
            csv.push_str(&format!("{obj},test,anomaly,{p},{m}\n"));
            k += 1;
            t.push((p, image(k, ImageFormat::Jpeg)));
            // VisA's masks hold small label values, not 255
            t.push((m, mask(1, (2, 5, 2, 5), ImageFormat::Png)));
        }
    }
    csv.push_str(csv_extra);
    t.push(("split_csv/1cls.csv".into(), csv.into_bytes()));
    t.into_iter().map(|(p, d)| (format!("VisA_20220922/{p}"), d)).collect()
}

#[test]
fn visa_is_converted_from_its_split_file() {
    let tree = visa_tree("");
    let bytes = archive(&tree, Kind::Tar);
    let csv = &tree.iter().find(|(p, _)| p.ends_with("1cls.csv")).unwrap().1;
    let mut m = manifest("visa", &bytes, &[("candle", counts(3, 1, 2)), ("pcb1", counts(2, 1, 1))]);
    m.file_checksums.insert("split_csv/1cls.csv".into(), sha256(csv));
    let (_d, dest, r) = fetch(&m, &bytes);
    let root = r.unwrap();
    assert_eq!(root, dest.join("visa"));
    assert_eq!(listing(&dest), vec!["VisA_20220922.tar", "visa"]);
    let candle = open(&root, "candle");
    assert_eq!(split(&candle), (3, 1, 2));
    assert_eq!(candle.defect_types(), vec!["bad", "good"]);
    let mask = candle.test.iter().find_map(|t| t.mask.clone()).unwrap();
    assert!(mask.ends_with("candle/ground_truth/bad/000_mask.png"), "{}", mask.display());
    assert_eq!(mask_values(&mask), vec![0, 255], "binarised");
    assert_eq!(split(&open(&root, "pcb1")), (2, 1, 1));
    let marker = ikd_datasets::Marker::read(&root).unwrap().unwrap();
    assert_eq!((marker.sha256, marker.conversion), (m.sha256.clone(), Some(Conversion::Visa)));

    // The split file's checksum is checked: another 1cls.csv is refused, nothing is left.
    let mut wrong = m.clone();
    wrong.file_checksums.insert("split_csv/1cls.csv".into(), "ab".repeat(32));
    let (_d, dest, r) = fetch(&wrong, &bytes);
    let e = r.unwrap_err();
    assert!(matches!(e, DatasetError::ChecksumMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("1cls.csv"), "{e}");
    assert_eq!(listing(&dest), vec!["VisA_20220922.tar"]);

    // A row naming a file outside the archive is refused.
    let tree = visa_tree("candle,test,anomaly,../../etc/passwd,\n");
    let bytes = archive(&tree, Kind::Tar);
    let csv = &tree.iter().find(|(p, _)| p.ends_with("1cls.csv")).unwrap().1;
    let mut m = manifest("visa", &bytes, &[("candle", counts(3, 1, 2)), ("pcb1", counts(2, 1, 1))]);
    m.file_checksums.insert("split_csv/1cls.csv".into(), sha256(csv));
    let (_d, dest, r) = fetch(&m, &bytes);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("not a plain relative path"), "{e}");
    assert_eq!(listing(&dest), vec!["VisA_20220922.tar"]);
}

fn btad_tree(categories: &[&str]) -> Tree {
    let mut t: Tree = Vec::new();
    let bmp = |k| image(k, ImageFormat::Bmp);
    for (c, cat) in categories.iter().enumerate() {
        let base = format!("BTech_Dataset_transformed/{cat}");
        let k = c as u8 * 10;
        for i in 0..3 {
            t.push((format!("{base}/train/ok/{i:04}.bmp"), bmp(k + i)));
        }
        t.push((format!("{base}/test/ok/0000.bmp"), bmp(k + 5)));
        for i in 0..2 {
            t.push((format!("{base}/test/ko/{i:04}.bmp"), bmp(k + 6 + i)));
            t.push((
                format!("{base}/ground_truth/ko/{i:04}.png"),
                mask(255, (0, 3, 0, 3), ImageFormat::Png),
            ));
        }
    }
    t
}

#[test]
fn btad_is_converted_to_png_with_ok_as_normal() {
    let bytes = archive(&btad_tree(&["01", "02"]), Kind::Zip);
    let m = manifest("btad", &bytes, &[("01", counts(3, 1, 2)), ("02", counts(3, 1, 2))]);
    let (_d, dest, r) = fetch(&m, &bytes);
    let root = r.unwrap();
    assert_eq!(listing(&dest), vec!["btad", "btad.zip"]);
    for name in ["01", "02"] {
        let c = open(&root, name);
        assert_eq!(c.normal, "ok");
        assert_eq!(split(&c), (3, 1, 2));
        assert_eq!(c.defect_types(), vec!["ko", "ok"]);
        let all = c.train.iter().chain(c.test.iter().map(|t| &t.path));
        assert!(all.clone().all(|p| p.extension().unwrap() == "png"), "BMP → PNG");
        assert_eq!(ikd_data::load_rgb(&c.train[0]).unwrap().dimensions(), (8, 8));
    }

    // A category the archive lacks stops the conversion; nothing but the archive is left, and
    // the next run (with the right manifest) starts over cleanly.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data");
    let server = Server::start(HashMap::from([(
        m.file_name.clone(),
        Route { body: bytes.clone(), ..Default::default() },
    )]));
    let mut three = m.clone();
    three.categories.push(CategoryCounts { name: "03".into(), counts: None });
    three.totals = None;
    let e = fetch_dataset(&three, &dest, &opts(&server, "btad.zip")).unwrap_err();
    assert!(e.to_string().contains("category `03` not found"), "{e}");
    assert_eq!(listing(&dest), vec!["btad.zip"]);
    let root = fetch_dataset(&m, &dest, &opts(&server, "btad.zip")).unwrap();
    assert_eq!(split(&open(&root, "01")), (3, 1, 2));
    assert_eq!(server.requests().len(), 1, "the verified archive is reused");
}

fn kolektor_tree() -> Tree {
    let mut t: Tree = Vec::new();
    let mut k = 0;
    for item in 1..=5 {
        for part in 0..2 {
            k += 1;
            let dir = format!("kos{item:02}");
            t.push((format!("{dir}/Part{part}.jpg"), image(k, ImageFormat::Jpeg)));
            // kos01..kos03's Part1 are defective
            let value = if part == 1 && item <= 3 { 1 } else { 0 };
            t.push((
                format!("{dir}/Part{part}_label.bmp"),
                mask(value, (1, 4, 1, 4), ImageFormat::Bmp),
            ));
        }
    }
    t
}

#[test]
fn kolektor_is_split_reproducibly_and_the_split_is_written() {
    let bytes = archive(&kolektor_tree(), Kind::Zip);
    // 10 images, 3 defective; 7 defect-free: round(0.2 · 7) = 1 to test, 6 to train
    let m = manifest("kolektor", &bytes, &[("kolektor", counts(6, 1, 3))]);
    let (_d, _dest, r) = fetch(&m, &bytes);
    let root = r.unwrap();
    let c = open(&root, "kolektor");
    assert_eq!(split(&c), (6, 1, 3));
    assert!(c.test.iter().any(|t| t.path.ends_with("test/defect/kos01_Part1.jpg")));
    let m0 = c.test.iter().find_map(|t| t.mask.clone()).unwrap();
    assert_eq!(mask_values(&m0), vec![0, 255]);
    let csv = fs::read_to_string(root.join("kolektor/split.csv")).unwrap();
    assert!(csv.contains("seed 42"), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.ends_with(",test,good")).count(), 1);
    assert_eq!(csv.lines().filter(|l| l.ends_with(",train,good")).count(), 6);
    assert!(csv.contains("kos02_Part1.jpg,test,defect"), "{csv}");
    // Converted again elsewhere, after an interrupted conversion left its staging folders
    // behind: they are cleared and the conversion redone, with the same split.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data");
    for stale in [".kolektorsdd.partial/kolektor/train/good", ".kolektorsdd.source.partial/kos01"] {
        fs::create_dir_all(dest.join(stale)).unwrap();
        fs::write(dest.join(stale).join("half.jpg"), b"half-written").unwrap();
    }
    let server = Server::start(HashMap::from([(
        m.file_name.clone(),
        Route { body: bytes.clone(), ..Default::default() },
    )]));
    let root = fetch_dataset(&m, &dest, &opts(&server, &m.file_name)).unwrap();
    assert_eq!(fs::read_to_string(root.join("kolektor/split.csv")).unwrap(), csv);
    assert_eq!(split(&open(&root, "kolektor")), (6, 1, 3));
    assert_eq!(listing(&dest), vec!["KolektorSDD.zip", "kolektorsdd"]);
}

#[test]
fn loco_masks_are_unioned() {
    let base = "mvtec_loco_anomaly_detection/breakfast_box";
    let mut t: Tree = Vec::new();
    for i in 0..2 {
        t.push((format!("{base}/train/good/{i:03}.png"), png(i)));
    }
    t.push((format!("{base}/validation/good/000.png"), png(3)));
    t.push((format!("{base}/test/good/000.png"), png(4)));
    t.push((format!("{base}/test/logical_anomalies/000.png"), png(5)));
    t.push((format!("{base}/test/structural_anomalies/000.png"), png(6)));
    t.push((
        format!("{base}/ground_truth/logical_anomalies/000/000.png"),
        mask(255, (0, 2, 0, 8), ImageFormat::Png),
    ));
    t.push((
        format!("{base}/ground_truth/logical_anomalies/000/001.png"),
        mask(255, (6, 8, 0, 8), ImageFormat::Png),
    ));
    t.push((
        format!("{base}/ground_truth/structural_anomalies/000/000.png"),
        mask(255, (3, 5, 3, 5), ImageFormat::Png),
    ));
    let bytes = archive(&t, Kind::TarXz);
    let m = manifest("loco", &bytes, &[("breakfast_box", counts(2, 1, 2))]);
    let (_d, _dest, r) = fetch(&m, &bytes);
    let root = r.unwrap();
    let c = open(&root, "breakfast_box");
    assert_eq!(split(&c), (2, 1, 2));
    assert!(root.join("breakfast_box/validation/good/000.png").is_file());
    let logical = c.test.iter().find(|t| t.defect == "logical_anomalies").unwrap();
    let u = ikd_data::load_mask(logical.mask.as_ref().unwrap()).unwrap();
    assert_eq!(
        (u.get_pixel(0, 0).0[0], u.get_pixel(7, 7).0[0], u.get_pixel(4, 4).0[0]),
        (255, 255, 0)
    );
}

#[test]
fn ad2_public_test_becomes_the_test_set() {
    let base = "mvtec_ad_2/can";
    let mut t: Tree = Vec::new();
    for i in 0..2 {
        t.push((format!("{base}/train/good/{i:03}_regular.png"), png(i)));
    }
    t.push((format!("{base}/validation/good/000_regular.png"), png(3)));
    t.push((format!("{base}/test_public/good/000_regular.png"), png(4)));
    t.push((format!("{base}/test_public/bad/000_regular.png"), png(5)));
    t.push((
        format!("{base}/test_public/ground_truth/bad/000_regular_mask.png"),
        mask(255, (1, 3, 1, 3), ImageFormat::Png),
    ));
    t.push((format!("{base}/test_private/000_regular.png"), png(6)));
    t.push((format!("{base}/test_private_mixed/000_regular.png"), png(7)));
    let bytes = archive(&t, Kind::TarGz);
    let m = manifest("ad2", &bytes, &[("can", counts(2, 1, 1))]);
    let (_d, _dest, r) = fetch(&m, &bytes);
    let root = r.unwrap();
    let c = open(&root, "can");
    assert_eq!(split(&c), (2, 1, 1));
    assert!(!root.join("can/test_private").exists());
    assert!(root.join("can/validation/good/000_regular.png").is_file());
}

// ------------------------------------------------------------------------------------------
// Refusals, for the formats the benchmarks come in

fn refused_zip(build: impl FnOnce(&mut zip::ZipWriter<Cursor<Vec<u8>>>), expect: &str) {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    for (p, d) in btad_tree(&["01"]) {
        z.start_file(p.as_str(), o).unwrap();
        z.write_all(&d).unwrap();
    }
    build(&mut z);
    let bytes = z.finish().unwrap().into_inner();
    let m = manifest("btad", &bytes, &[("01", counts(3, 1, 2))]);
    let (dir, dest, r) = fetch(&m, &bytes);
    let e = r.unwrap_err();
    assert!(matches!(e, DatasetError::UnsafeEntry { .. }), "{e:?}");
    assert!(e.to_string().contains(expect), "`{expect}` not in {e}");
    assert_eq!(listing(&dest), vec!["btad.zip"], "nothing extracted");
    assert!(!dir.path().join("x").exists());
}

#[test]
fn zip_entries_that_could_escape_are_refused() {
    let o = zip::write::SimpleFileOptions::default();
    refused_zip(|z| z.start_file("../x", o).map(drop).unwrap(), "path contains `..`");
    refused_zip(|z| z.start_file("/tmp/ikd-zip-abs-escape", o).map(drop).unwrap(), "absolute path");
    refused_zip(
        |z| z.add_symlink("BTech_Dataset_transformed/01/evil", "/etc", o).unwrap(),
        "symbolic link",
    );
    assert!(!Path::new("/tmp/ikd-zip-abs-escape").exists());
}

#[test]
fn tar_gz_entries_that_could_escape_are_refused_and_bad_downloads_too() {
    let mut t = btad_tree(&["01"]);
    t.push(("../x".into(), b"x".to_vec()));
    // tar::Builder refuses `..` in names: write the header by hand
    let mut b =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (p, d) in &t {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &d[..]).unwrap();
    }
    let bytes = b.into_inner().unwrap().finish().unwrap();
    let mut m = manifest("ad2", &bytes, &[("01", counts(3, 1, 2))]);
    m.conversion = Some(Conversion::Btad);
    m.layout.normal = "ok".into();
    let (_d, dest, r) = fetch(&m, &bytes);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("`..`"), "{e}");
    assert_eq!(listing(&dest), vec!["mvtec_ad_2.tar.gz"]);

    // A wrong checksum: kept aside, nothing extracted.
    let good = archive(&btad_tree(&["01"]), Kind::Zip);
    let mut m = manifest("btad", &good, &[("01", counts(3, 1, 2))]);
    m.sha256 = "cd".repeat(32);
    let (_d, dest, r) = fetch(&m, &good);
    assert!(matches!(r.unwrap_err(), DatasetError::ChecksumMismatch { .. }));
    assert_eq!(listing(&dest), vec!["btad.zip.sha256-mismatch"]);

    // A truncated download: the partial file stays for the next run, nothing extracted.
    let m = manifest("btad", &good, &[("01", counts(3, 1, 2))]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data");
    let server = Server::start(HashMap::from([(
        "btad.zip".to_string(),
        Route { body: good.clone(), cut_first_at: Some(good.len() / 2), ignore_range: false },
    )]));
    let e = fetch_dataset(&m, &dest, &opts(&server, "btad.zip")).unwrap_err();
    assert!(matches!(e, DatasetError::Http { .. }), "{e:?}");
    assert_eq!(listing(&dest), vec!["btad.zip.part"]);
    // …and the next run resumes it and converts.
    let root = fetch_dataset(&m, &dest, &opts(&server, "btad.zip")).unwrap();
    assert_eq!(split(&open(&root, "01")), (3, 1, 2));
}

/// A plain tar (VisA's format) of `tree` plus one raw entry: (name, type, link target).
fn raw_tar(tree: &Tree, extra: (&str, tar::EntryType, Option<&str>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut entries: Vec<(String, tar::EntryType, Option<&str>, Vec<u8>)> =
        tree.iter().map(|(p, d)| (p.clone(), tar::EntryType::Regular, None, d.clone())).collect();
    entries.push((extra.0.to_string(), extra.1, extra.2, b"x".to_vec()));
    for (name, kind, link, data) in entries {
        let data = if kind == tar::EntryType::Regular { data } else { Vec::new() };
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn plain_tar_entries_that_could_escape_are_refused() {
    let tree = visa_tree("");
    let csv = tree.iter().find(|(p, _)| p.ends_with("1cls.csv")).unwrap().1.clone();
    for (extra, expect) in [
        (("../x", tar::EntryType::Regular, None), "path contains `..`"),
        (("/tmp/ikd-tar-abs-escape", tar::EntryType::Regular, None), "absolute path"),
        (("VisA_20220922/candle/evil", tar::EntryType::Symlink, Some("../../..")), "link to"),
        (("VisA_20220922/candle/ok", tar::EntryType::Symlink, Some("Data")), "link to `Data`"),
        (
            ("VisA_20220922/hard", tar::EntryType::Link, Some("/etc/passwd")),
            "link to `/etc/passwd`",
        ),
    ] {
        let bytes = raw_tar(&tree, extra);
        let mut m =
            manifest("visa", &bytes, &[("candle", counts(3, 1, 2)), ("pcb1", counts(2, 1, 1))]);
        m.file_checksums.insert("split_csv/1cls.csv".into(), sha256(&csv));
        let (dir, dest, r) = fetch(&m, &bytes);
        let e = r.unwrap_err();
        assert!(matches!(e, DatasetError::UnsafeEntry { .. }), "{e:?}");
        assert!(e.to_string().contains(expect), "`{expect}` not in {e}");
        assert_eq!(listing(&dest), vec!["VisA_20220922.tar"], "nothing extracted");
        assert!(!dir.path().join("x").exists());
    }
    assert!(!Path::new("/tmp/ikd-tar-abs-escape").exists());
}
