//! NumPy `.npz` archives (`np.savez`, `np.savez_compressed`): a ZIP file of `.npy` entries
//! named `KEY.npy`. Read whole into f64 arrays; written uncompressed, as `np.savez` does
//! (pytorch-fid's `--save-stats` files: `mu` and `sigma`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::DataError;
use crate::npy::{Values, encode_npy, parse_npy_f64};

/// An array of an archive: its shape and values.
pub type Array = (Vec<usize>, Vec<f64>);

/// Every float array of the archive at `path`, by key (the entry name without `.npy`).
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, Array>, DataError> {
    let bad = |reason: String| DataError::Corrupt {
        path: path.into(),
        reason,
    };
    let bytes = diffuse_fs::read(path, diffuse_fs::Limit::memory())?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("not an .npz (ZIP) archive: {e}")))?;
    let mut arrays = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(e.to_string()))?;
        let name = entry
            .name()
            .map_err(|e| bad(format!("entry {i} has no readable name: {e}")))?
            .to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("entry {name}: {e}")))?;
        let array = parse_npy_f64(&data).map_err(|e| bad(format!("entry {name}: {e}")))?;
        arrays.insert(key.to_string(), array);
    }
    Ok(arrays)
}

/// Writes `entries` (key, shape, values) as an uncompressed `.npz`, atomically.
pub fn write_npz(path: &Path, entries: &[(&str, &[usize], Values)]) -> Result<(), DataError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let fail = |e: String| DataError::Corrupt {
        path: path.into(),
        reason: format!("cannot write the archive: {e}"),
    };
    for (key, shape, values) in entries {
        zip.start_file(format!("{key}.npy"), options)
            .map_err(|e| fail(e.to_string()))?;
        zip.write_all(&encode_npy(shape, *values))
            .map_err(|e| fail(e.to_string()))?;
    }
    let bytes = zip.finish().map_err(|e| fail(e.to_string()))?.into_inner();
    Ok(diffuse_fs::write(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_f32_and_f64_values() {
        let dir = std::env::temp_dir().join(format!("diffuse-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stats.npz");
        let mu = [0.1f32, -2.5, 3.0];
        let sigma: Vec<f64> = (0..9).map(|i| 1.0 / (i as f64 + 3.0)).collect();
        write_npz(
            &path,
            &[
                ("mu", &[3], Values::F32(&mu)),
                ("sigma", &[3, 3], Values::F64(&sigma)),
            ],
        )
        .unwrap();
        let back = read_npz(&path).unwrap();
        assert_eq!(
            back["mu"],
            (vec![3], mu.iter().map(|&v| v as f64).collect())
        );
        assert_eq!(back["sigma"], (vec![3, 3], sigma));
        std::fs::write(&path, b"not a zip").unwrap();
        let err = read_npz(&path).unwrap_err().to_string();
        assert!(err.contains("not an .npz"), "{err}");
    }
}
