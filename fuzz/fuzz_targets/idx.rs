#![no_main]
// MNIST / Fashion-MNIST IDX files, raw or gzip.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = diffuse_fuzz::file("x.idx", data);
    let _ = diffuse_data::read_idx(&path);
});
