//! CIFAR-10, binary version: each record is 1 label byte then 3072 pixel bytes (the red, green and
//! blue 32 x 32 planes, row-major), 10,000 records per batch file.

use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::idx::Split;
use crate::images::ImageSet;

const SIDE: usize = 32;
const RECORD: usize = 1 + 3 * SIDE * SIDE;

/// The batch files of a split: `data_batch_1.bin` .. `data_batch_5.bin`, or `test_batch.bin`,
/// in `dir` or in `dir/cifar-10-batches-bin` (the archive's own folder).
fn batch_files(dir: &Path, split: Split) -> Result<Vec<PathBuf>, DataError> {
    let names: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    for base in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        let paths: Vec<PathBuf> = names.iter().map(|n| base.join(n)).collect();
        if paths.iter().all(|p| p.is_file()) {
            return Ok(paths);
        }
    }
    Err(DataError::NotFound {
        dir: dir.into(),
        what: "CIFAR-10 binary batches",
        looked_for: format!(
            "{} (in the folder or its cifar-10-batches-bin/)",
            names.join(", ")
        ),
    })
}

/// Reads CIFAR-10 records from one file; its length must be a whole number of records.
pub fn read_cifar_batch(path: &Path) -> Result<ImageSet, DataError> {
    let bytes = diffuse_fs::read(path, diffuse_fs::Limit::memory())?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::Corrupt {
            path: path.into(),
            reason: format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not the binary version)",
                bytes.len()
            ),
        });
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD - 1));
    for record in bytes.chunks_exact(RECORD) {
        if record[0] > 9 {
            return Err(DataError::Corrupt {
                path: path.into(),
                reason: format!(
                    "label {} at record {} is not a CIFAR-10 class (0-9)",
                    record[0],
                    labels.len()
                ),
            });
        }
        labels.push(record[0]);
        pixels.extend_from_slice(&record[1..]);
    }
    Ok(ImageSet {
        pixels,
        channels: 3,
        height: SIDE,
        width: SIDE,
        labels: Some(labels),
    })
}

/// The CIFAR-10 training (50,000) or test (10,000) images from `dir`.
pub fn load_cifar10(dir: &Path, split: Split) -> Result<ImageSet, DataError> {
    let mut all: Option<ImageSet> = None;
    for path in batch_files(dir, split)? {
        let batch = read_cifar_batch(&path)?;
        match all.as_mut() {
            None => all = Some(batch),
            Some(set) => {
                set.pixels.extend(batch.pixels);
                set.labels.as_mut().unwrap().extend(batch.labels.unwrap());
            }
        }
    }
    Ok(all.expect("at least one batch file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, rgb: [u8; 3]) -> Vec<u8> {
        let mut r = vec![label];
        for c in rgb {
            r.extend(std::iter::repeat_n(c, SIDE * SIDE));
        }
        r
    }

    #[test]
    fn reads_records_in_channel_planes() {
        let dir = std::env::temp_dir().join(format!("diffuse-cifar-{}", std::process::id()));
        let inner = dir.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&inner).unwrap();
        let bytes: Vec<u8> = [record(3, [10, 20, 30]), record(9, [0, 255, 7])].concat();
        std::fs::write(inner.join("test_batch.bin"), &bytes).unwrap();
        let set = load_cifar10(&dir, Split::Test).unwrap();
        assert_eq!(set.shape(), [2, 3, 32, 32]);
        assert_eq!(set.labels, Some(vec![3, 9]));
        let img = set.image(1);
        assert_eq!((img[0], img[1024], img[2048]), (0, 255, 7));

        let bad = dir.join("bad.bin");
        std::fs::write(&bad, &bytes[..5000]).unwrap();
        let err = read_cifar_batch(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.bin") && err.contains("3073"), "{err}");
        let err = load_cifar10(&dir, Split::Train).unwrap_err().to_string();
        assert!(err.contains("data_batch_1.bin"), "{err}");
    }
}
