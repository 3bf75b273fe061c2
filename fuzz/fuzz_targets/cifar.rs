#![no_main]
// CIFAR-10 binary batches.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = diffuse_fuzz::file("data_batch_1.bin", data);
    let _ = diffuse_data::read_cifar_batch(&path);
});
