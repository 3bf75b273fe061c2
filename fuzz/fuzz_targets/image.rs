#![no_main]
// Image folders: one PNG or JPEG (the first byte picks the extension) decoded, resized and
// cropped as `--dataset folder` does, gray or RGB.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let dir = diffuse_fuzz::scratch().join("images");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let name = if pick & 1 == 0 { "a.png" } else { "a.jpg" };
    std::fs::write(dir.join(name), bytes).unwrap();
    let channels = if pick & 2 == 0 { 1 } else { 3 };
    let _ = diffuse_data::load_image_folder(&dir, 8, channels);
});
