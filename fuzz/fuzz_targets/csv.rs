#![no_main]
// `.csv` point clouds (--data points.csv).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = diffuse_fuzz::file("x.csv", data);
    let _ = diffuse_data::load_points(&path, 2);
});
