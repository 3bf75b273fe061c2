//! MNIST and Fashion-MNIST: the IDX format (LeCun et al.), raw or gzip-compressed.
//!
//! An IDX file is a magic number `0x00 0x00 <type> <ndim>` (type 0x08 = unsigned byte), then `ndim`
//! big-endian u32 dimensions, then the data in C order.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::images::ImageSet;

/// Which half of MNIST / Fashion-MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Reads a whole file, decompressing it when it starts with the gzip magic bytes. Inflation
/// stops one byte past the size the IDX header inside declares, so a gzip bomb costs no more
/// memory than an honest file of its declared size.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = diffuse_fs::read(path, diffuse_fs::Limit::memory())?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let corrupt = |e: std::io::Error| DataError::Corrupt {
        path: path.into(),
        reason: format!("gzip data is corrupt or truncated ({e})"),
    };
    let mut decoder = flate2::read::GzDecoder::new(raw.as_slice());
    let mut out = vec![0u8; 4];
    decoder.read_exact(&mut out).map_err(corrupt)?;
    let ndim = out[3] as usize;
    out.resize(4 + 4 * ndim, 0);
    decoder.read_exact(&mut out[4..]).map_err(corrupt)?;
    let declared = data_size(&out, ndim).ok_or_else(|| DataError::Corrupt {
        path: path.into(),
        reason: "IDX dimensions overflow".into(),
    })?;
    decoder
        .take(declared as u64 + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    Ok(out)
}

/// The data bytes the dimensions in `header` declare; `None` on overflow.
fn data_size(header: &[u8], ndim: usize) -> Option<usize> {
    (0..ndim)
        .map(|i| u32::from_be_bytes(header[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .try_fold(1usize, |acc, d| acc.checked_mul(d))
}

/// An IDX array of unsigned bytes: its dimensions and data.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bytes = read_maybe_gzip(path)?;
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.into(),
        reason,
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(corrupt("not an IDX file (bad magic number)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(corrupt(format!(
            "IDX type 0x{:02x} is not unsigned bytes (0x08)",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(corrupt("IDX header is truncated".into()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let count = data_size(&bytes, ndim)
        .ok_or_else(|| corrupt(format!("IDX dimensions {dims:?} overflow")))?;
    let body = &bytes[header..];
    if body.len() != count {
        return Err(corrupt(format!(
            "IDX dimensions {dims:?} need {count} bytes of data, found {} (truncated or corrupt file)",
            body.len()
        )));
    }
    Ok((dims, body.to_vec()))
}

/// The file for `stem` in `dir`: `stem.gz` or `stem`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let path = dir.join(&name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(DataError::NotFound {
        dir: dir.into(),
        what: "IDX file",
        looked_for: format!("{stem}.gz or {stem}"),
    })
}

/// MNIST or Fashion-MNIST (same file names) from `dir`: 1 x 28 x 28 images with labels.
pub fn load_mnist(dir: &Path, split: Split) -> Result<ImageSet, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (dims, pixels) = read_idx(&images_path)?;
    if dims.len() != 3 {
        return Err(DataError::Corrupt {
            path: images_path,
            reason: format!("expected 3 image dimensions, found {dims:?}"),
        });
    }
    let (ldims, labels) = read_idx(&labels_path)?;
    if ldims != [dims[0]] {
        return Err(DataError::Corrupt {
            path: labels_path,
            reason: format!("{ldims:?} labels for {} images", dims[0]),
        });
    }
    Ok(ImageSet {
        pixels,
        channels: 1,
        height: dims[1],
        width: dims[2],
        labels: Some(labels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("diffuse-idx-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_raw_and_gzip_mnist_layout() {
        let dir = tmpdir("ok");
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        std::fs::write(
            dir.join("t10k-images-idx3-ubyte.gz"),
            gzip(&idx_bytes(&[2, 3, 4], &pixels)),
        )
        .unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[7, 1])).unwrap();
        let set = load_mnist(&dir, Split::Test).unwrap();
        assert_eq!(set.shape(), [2, 1, 3, 4]);
        assert_eq!(set.image(1)[0], 12);
        assert_eq!(set.labels, Some(vec![7, 1]));
    }

    #[test]
    fn truncated_and_corrupt_files_name_the_file() {
        let dir = tmpdir("bad");
        let full = idx_bytes(&[2, 3, 4], &[0; 24]);
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("short", full[..20].to_vec(), "truncated"),
            ("magic", b"hello world".to_vec(), "bad magic"),
            ("gz", gzip(&full)[..15].to_vec(), "gzip"),
            (
                "type",
                {
                    let mut b = full.clone();
                    b[2] = 0x0d;
                    b
                },
                "0x0d",
            ),
        ];
        for (name, bytes, expect) in cases {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = read_idx(&path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expect), "{err}");
        }
        let err = load_mnist(&tmpdir("empty"), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    }

    /// The real MNIST and Fashion-MNIST in ../shared/data, when present (sizes from its README).
    #[test]
    fn a_gzip_bomb_inflates_no_further_than_its_header_declares() {
        let dir = tmpdir("bomb");
        // Declares 2x3x4 = 24 bytes but inflates to 64 MiB.
        let mut bytes = idx_bytes(&[2, 3, 4], &[0; 24]);
        bytes.resize(64 << 20, 0);
        let path = dir.join("bomb.gz");
        std::fs::write(&path, gzip(&bytes)).unwrap();
        let err = read_idx(&path).unwrap_err().to_string();
        assert!(err.contains("need 24 bytes of data, found 25"), "{err}");
        // Dimensions whose product overflows are an error, not a wrapped size.
        let path = dir.join("huge");
        std::fs::write(&path, idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[])).unwrap();
        let err = read_idx(&path).unwrap_err().to_string();
        assert!(err.contains("overflow"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn real_mnist_when_present() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
        for set in ["mnist", "fashion-mnist"] {
            let dir = root.join(set);
            if !dir.is_dir() {
                eprintln!(
                    "skipping: {} not found (shared datasets absent)",
                    dir.display()
                );
                continue;
            }
            let train = load_mnist(&dir, Split::Train).unwrap();
            let test = load_mnist(&dir, Split::Test).unwrap();
            assert_eq!(train.shape(), [60_000, 1, 28, 28], "{set}");
            assert_eq!(test.shape(), [10_000, 1, 28, 28], "{set}");
            let mut counts = [0usize; 10];
            for l in test.labels.as_ref().unwrap() {
                counts[*l as usize] += 1;
            }
            assert!(counts.iter().all(|c| *c > 800), "{set}: {counts:?}");
            if set == "fashion-mnist" {
                assert!(counts.iter().all(|c| *c == 1000), "{counts:?}");
            }
        }
    }
}
