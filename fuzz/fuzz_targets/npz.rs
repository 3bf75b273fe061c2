#![no_main]
// `.npz` archives: pytorch-fid's statistics files (`diffuse fid a.npz b.npz`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = diffuse_fuzz::file("stats.npz", data);
    let _ = diffuse_data::npz::read_npz(&path);
});
