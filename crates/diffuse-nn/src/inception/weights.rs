//! Named float tensors from a PyTorch `state_dict` file (`torch.save`, read by burn's PyTorch
//! reader, `pytorch-reader`) or a safetensors file of the same names, converted to float32.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::NnError;

/// A tensor's shape and its values in row-major order, as float32.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Tensors by name. [`Self::take`] removes what a network consumes, so what is left at the end
/// is what the file has that the network does not.
#[derive(Debug, Clone, Default)]
pub struct TensorMap {
    pub tensors: BTreeMap<String, NamedTensor>,
}

impl TensorMap {
    /// Reads `path`: a PyTorch file (`torch.save`'s ZIP archive, or its legacy formats) or a
    /// safetensors file (told apart by the JSON header at byte 8). Integer
    /// tensors (`num_batches_tracked`) are kept as floats; they are only ever ignored.
    pub fn read(path: &Path) -> Result<Self, NnError> {
        let bad = |reason: String| NnError::Weights {
            path: path.into(),
            reason,
        };
        // A regular file within the memory available (diffuse-fs), before any parser sees it;
        // its first bytes say which parser.
        let (file, len) = diffuse_fs::open(path)?;
        let limit = diffuse_fs::Limit::memory();
        if len > limit.bytes {
            return Err(diffuse_fs::FsError::TooLarge {
                path: path.into(),
                size: len,
                limit: limit.bytes,
                what: limit.what,
            }
            .into());
        }
        let mut head = Vec::with_capacity(9);
        file.take(9)
            .read_to_end(&mut head)
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        // safetensors: an 8-byte header length, then the JSON header.
        if head.get(8) == Some(&b'{') {
            let bytes = diffuse_fs::read(path, limit)?;
            Self::from_safetensors(&bytes).map_err(|e| bad(format!("bad safetensors file: {e}")))
        } else {
            Self::read_pytorch(path).map_err(bad)
        }
    }

    fn read_pytorch(path: &Path) -> Result<Self, String> {
        let reader = pytorch_reader::PytorchReader::new(path)
            .map_err(|e| format!("not a readable PyTorch file: {e}"))?;
        let mut tensors = BTreeMap::new();
        for (name, tensor) in reader.into_tensors() {
            let bytes = tensor.read().map_err(|e| e.to_string())?;
            use pytorch_reader::DType;
            let values = match tensor.dtype() {
                DType::F32 => convert(&bytes, f32::from_ne_bytes),
                DType::F64 => convert(&bytes, |b: [u8; 8]| f64::from_ne_bytes(b) as f32),
                DType::F16 => convert(&bytes, |b| half::f16::from_ne_bytes(b).to_f32()),
                DType::BF16 => convert(&bytes, |b| half::bf16::from_ne_bytes(b).to_f32()),
                DType::I64 => convert(&bytes, |b: [u8; 8]| i64::from_ne_bytes(b) as f32),
                other => return Err(format!("tensor {name} has element type {other:?}")),
            };
            let shape = tensor.shape().to_vec();
            tensors.insert(name, NamedTensor { shape, values });
        }
        Ok(Self { tensors })
    }

    /// Tensors from a safetensors file's bytes (float32, float16, bfloat16, float64, int64).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, String> {
        use safetensors::Dtype;
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.tensors() {
            let data = view.data();
            let values = match view.dtype() {
                Dtype::F32 => convert(data, f32::from_le_bytes),
                Dtype::F64 => convert(data, |b: [u8; 8]| f64::from_le_bytes(b) as f32),
                Dtype::F16 => convert(data, |b| half::f16::from_le_bytes(b).to_f32()),
                Dtype::BF16 => convert(data, |b| half::bf16::from_le_bytes(b).to_f32()),
                Dtype::I64 => convert(data, |b: [u8; 8]| i64::from_le_bytes(b) as f32),
                other => return Err(format!("tensor {name} has element type {other:?}")),
            };
            let shape = view.shape().to_vec();
            tensors.insert(name, NamedTensor { shape, values });
        }
        Ok(Self { tensors })
    }

    /// Removes and returns tensor `name`, which must have `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| format!("it has no tensor `{name}`"))?;
        if tensor.shape != shape {
            return Err(format!(
                "tensor `{name}` has shape {:?} where {shape:?} is expected",
                tensor.shape
            ));
        }
        Ok(tensor.values)
    }
}

fn convert<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks of N bytes")))
        .collect()
}
