//! The float type of saved weights: diffusers' folders hold float32, float16 or bfloat16
//! (`pipe.to(torch.float16).save_pretrained(dir)`); burn writes float32, which [`cast`] rewrites
//! tensor by tensor (round to nearest even, as PyTorch's `.to(dtype)`), the metadata kept.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// The float type a saved folder's weights are written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightDtype {
    #[default]
    Float32,
    Float16,
    Bfloat16,
}

impl WeightDtype {
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::Float32 => "float32",
            WeightDtype::Float16 => "float16",
            WeightDtype::Bfloat16 => "bfloat16",
        }
    }
}

/// A float32 safetensors file's bytes with every tensor in `dtype` (the same bytes for
/// float32); an error for a tensor of another type, a finite weight the type cannot hold
/// (float16's largest is 65504), or a malformed file.
pub fn cast(bytes: Vec<u8>, dtype: WeightDtype) -> Result<Vec<u8>, String> {
    // A float32 value to its rounding (as float32, to catch overflow) and its two bytes.
    type Rounding = fn(f32) -> (f32, [u8; 2]);
    let (to, convert): (Dtype, Rounding) = match dtype {
        WeightDtype::Float32 => return Ok(bytes),
        WeightDtype::Float16 => (Dtype::F16, |v| {
            let h = half::f16::from_f32(v);
            (h.to_f32(), h.to_le_bytes())
        }),
        WeightDtype::Bfloat16 => (Dtype::BF16, |v| {
            let h = half::bf16::from_f32(v);
            (h.to_f32(), h.to_le_bytes())
        }),
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| e.to_string())?;
    let mut cast: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format!("{name} is {:?}, not float32", view.dtype()));
        }
        let mut data = Vec::with_capacity(view.data().len() / 2);
        for b in view.data().chunks_exact(4) {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let (rounded, bytes) = convert(v);
            if v.is_finite() && !rounded.is_finite() {
                return Err(format!("{name} holds {v}, beyond {}'s range", dtype.name()));
            }
            data.extend(bytes);
        }
        cast.push((name, view.shape().to_vec(), data));
    }
    let views = cast
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(to, shape.clone(), data).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let metadata: Option<HashMap<String, String>> = header.metadata().clone();
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(values: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![values.len()], &data).unwrap();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize([("w", view)], Some(meta)).unwrap()
    }

    #[test]
    fn weights_round_to_the_nearest_half_and_keep_their_metadata() {
        // float16 keeps 10 fraction bits (its step at 1 is 2^-10), bfloat16 7 (2^-7). Halfway
        // values go to the even neighbour: 1 + 2^-11 to 1, 1 + 3 * 2^-11 to 1 + 2^-9.
        let values = [
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            -2.5,
            65000.0,
        ];
        let bytes = file(&values);
        assert_eq!(cast(bytes.clone(), WeightDtype::Float32).unwrap(), bytes);
        for (dtype, expect) in [
            (
                WeightDtype::Float16,
                vec![1.0, 1.0 + 2f32.powi(-9), -2.5, 64992.0],
            ),
            (WeightDtype::Bfloat16, vec![1.0, 1.0, -2.5, 65024.0]),
        ] {
            let out = cast(bytes.clone(), dtype).unwrap();
            let st = SafeTensors::deserialize(&out).unwrap();
            let view = st.tensor("w").unwrap();
            let got: Vec<f32> = view
                .data()
                .chunks_exact(2)
                .map(|b| match dtype {
                    WeightDtype::Float16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                    _ => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                })
                .collect();
            assert_eq!(got, expect, "{dtype:?}");
            let (_, header) = SafeTensors::read_metadata(&out).unwrap();
            assert_eq!(
                header.metadata().as_ref().unwrap()["format"],
                "pt",
                "{dtype:?}"
            );
        }
        // 65520 rounds past float16's largest value (65504): refused, not written as inf.
        let err = cast(file(&[1.0, 65520.0]), WeightDtype::Float16).unwrap_err();
        assert!(err.contains("w holds 65520"), "{err}");
        assert!(cast(file(&[65520.0]), WeightDtype::Bfloat16).is_ok());
        let mut not_f32 = cast(bytes, WeightDtype::Float16).unwrap();
        assert!(
            cast(not_f32.clone(), WeightDtype::Bfloat16)
                .unwrap_err()
                .contains("not float32")
        );
        not_f32.truncate(10);
        assert!(cast(not_f32, WeightDtype::Float16).is_err());
    }
}
