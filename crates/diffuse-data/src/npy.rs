//! Reading and writing NumPy `.npy` files (format version 1.0-3.0): little- or big-endian
//! float32/float64, C order. Arrays are returned as float32.

use std::path::Path;

use crate::error::DataError;

/// An n-dimensional float32 array in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

pub fn read_npy(path: &Path) -> Result<NpyArray, DataError> {
    let bytes = diffuse_fs::read(path, diffuse_fs::Limit::memory())?;
    parse_npy(&bytes).map_err(|e| match e {
        ParseError::Format(reason) => DataError::NpyFormat {
            path: path.into(),
            reason,
        },
        ParseError::Dtype(dtype) => DataError::NpyDtype {
            path: path.into(),
            dtype,
        },
    })
}

enum ParseError {
    Format(String),
    Dtype(String),
}

/// The array's shape, its element width in bytes and byte order, and its data.
type Layout<'a> = (Vec<usize>, usize, bool, &'a [u8]);

fn parse_layout(bytes: &[u8]) -> Result<Layout<'_>, ParseError> {
    let fmt = |s: &str| ParseError::Format(s.to_string());
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(fmt("missing the \\x93NUMPY magic string"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(ParseError::Format(format!(
                "unsupported format version {v}"
            )));
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| fmt("header is truncated"))?;
    let header = std::str::from_utf8(header).map_err(|_| fmt("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| fmt("header has no 'descr'"))?;
    let descr = quoted(descr).ok_or_else(|| fmt("'descr' is not a quoted string"))?;
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(fmt(
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape = parse_shape(header).ok_or_else(|| fmt("header has no valid 'shape'"))?;
    let body = &bytes[start + header_len..];
    let (width, little) = match descr {
        "<f4" | "=f4" => (4, true),
        ">f4" => (4, false),
        "<f8" | "=f8" => (8, true),
        ">f8" => (8, false),
        other => return Err(ParseError::Dtype(other.to_string())),
    };
    let size = shape
        .iter()
        .try_fold(width, |acc: usize, &d| acc.checked_mul(d))
        .ok_or_else(|| fmt(&format!("shape {shape:?} is too large to address")))?;
    if body.len() < size {
        return Err(ParseError::Format(format!(
            "data is truncated: shape {shape:?} needs {size} bytes, found {}",
            body.len()
        )));
    }
    Ok((shape, width, little, &body[..size]))
}

fn parse_npy(bytes: &[u8]) -> Result<NpyArray, ParseError> {
    let (shape, width, little, body) = parse_layout(bytes)?;
    let data = values(body, width, little, |v| v, |v| v as f32);
    Ok(NpyArray { shape, data })
}

/// The elements of `body` (`width` bytes each, little- or big-endian), float32 ones through
/// `from_f32` and float64 ones through `from_f64`.
fn values<T>(
    body: &[u8],
    width: usize,
    little: bool,
    from_f32: fn(f32) -> T,
    from_f64: fn(f64) -> T,
) -> Vec<T> {
    body.chunks_exact(width)
        .map(|c| match (width, little) {
            (4, true) => from_f32(f32::from_le_bytes(c.try_into().unwrap())),
            (4, false) => from_f32(f32::from_be_bytes(c.try_into().unwrap())),
            (_, true) => from_f64(f64::from_le_bytes(c.try_into().unwrap())),
            (_, false) => from_f64(f64::from_be_bytes(c.try_into().unwrap())),
        })
        .collect()
}

/// An array's shape and its values as f64 (float32 arrays widened exactly).
pub fn parse_npy_f64(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f64>), String> {
    let (shape, width, little, body) = parse_layout(bytes).map_err(|e| match e {
        ParseError::Format(reason) => reason,
        ParseError::Dtype(dtype) => {
            format!("element type {dtype}, where float32 or float64 is read")
        }
    })?;
    let data = values(body, width, little, f64::from, |v| v);
    Ok((shape, data))
}

/// The text after `'key':` in the header dict, up to the end of the header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest[rest.find(':')? + 1..].trim_start())
}

/// The contents of the quoted string `value` starts with.
fn quoted(value: &str) -> Option<&str> {
    let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &value[1..];
    Some(&rest[..rest.find(quote)?])
}

fn parse_shape(header: &str) -> Option<Vec<usize>> {
    let value = dict_value(header, "shape")?;
    let inner = value.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect()
}

/// Writes a little-endian float32 `.npy` (format 1.0), readable by `np.load`.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), DataError> {
    Ok(diffuse_fs::write(
        path,
        &encode_npy(shape, Values::F32(data)),
    )?)
}

/// The values of an array to encode, by element type.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// The bytes of a little-endian `.npy` (format 1.0) of `shape`.
pub fn encode_npy(shape: &[usize], data: Values) -> Vec<u8> {
    let (descr, len) = match data {
        Values::F32(d) => ("<f4", d.len()),
        Values::F64(d) => ("<f8", d.len()),
    };
    assert_eq!(
        shape.iter().product::<usize>(),
        len,
        "shape does not match data"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that magic + version + length + header + '\n' is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + len * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match data {
        Values::F32(d) => d
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Values::F64(d) => d
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shapes() {
        let dir = std::env::temp_dir().join(format!("diffuse-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for shape in [vec![3usize, 2], vec![4], vec![2, 1, 2, 2]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let path = dir.join("a.npy");
            write_npy(&path, &shape, &data).unwrap();
            let back = read_npy(&path).unwrap();
            assert_eq!(back, NpyArray { shape, data });
        }
    }

    #[test]
    fn a_shape_too_large_to_address_is_an_error() {
        let dir = std::env::temp_dir().join(format!("diffuse-npy-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.npy");
        write_npy(&path, &[2, 2], &[0.0; 4]).unwrap();
        // The same file with a header declaring shape (2^62, 2), padded to the same length.
        let text = std::fs::read(&path).unwrap();
        let len = u16::from_le_bytes([text[8], text[9]]) as usize;
        let mut h = String::from(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 2), }",
        );
        while h.len() + 1 < len {
            h.push(' ');
        }
        h.push('\n');
        let mut file = text[..8].to_vec();
        file.extend((h.len() as u16).to_le_bytes());
        file.extend(h.as_bytes());
        file.extend(&text[10 + len..]);
        std::fs::write(&path, file).unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_files() {
        assert!(matches!(
            parse_npy(b"not numpy at all"),
            Err(ParseError::Format(_))
        ));
        let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        assert!(matches!(parse_npy(&bytes), Err(ParseError::Dtype(d)) if d == "<i8"));
    }
}
