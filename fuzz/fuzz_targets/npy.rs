#![no_main]
// `.npy` arrays: --init-noise, --data points.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = diffuse_fuzz::file("x.npy", data);
    let _ = diffuse_data::read_npy(&path);
    let _ = diffuse_data::load_points(&path, 2);
});
