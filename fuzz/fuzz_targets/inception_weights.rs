#![no_main]
// `--inception FILE`: a PyTorch state dict (ZIP or legacy) or safetensors, read by name, then
// built into the FID Inception (refused unless every tensor is the network's).
use burn::tensor::Device;
use diffuse_nn::inception::{Inception, TensorMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = diffuse_fuzz::file("weights.pth", data);
    if let Ok(map) = TensorMap::read(&path) {
        let _ = Inception::from_tensors(map, &Device::default());
    }
});
