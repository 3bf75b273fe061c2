//! A folder of PNG/JPEG images, resized and center-cropped to a square, as torchvision's
//! `Resize(size)` (shorter side to `size`, bilinear) then `CenterCrop(size)`.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::error::DataError;
use crate::images::ImageSet;

fn is_image(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// One image file, read whole (a regular file, within the memory available) and decoded by
/// its content, within the `image` crate's default limits on its dimensions.
fn decode(path: &Path) -> Result<image::DynamicImage, DataError> {
    let bytes = diffuse_fs::read(path, diffuse_fs::Limit::memory())?;
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::Corrupt {
            path: path.into(),
            reason: format!("cannot read image: {e}"),
        })?
        .decode()
        .map_err(|e| DataError::Corrupt {
            path: path.into(),
            reason: format!("cannot decode image: {e}"),
        })
}

/// Interleaved HWC to planar CHW.
fn planar(rgb: &image::RgbImage) -> impl Iterator<Item = u8> + '_ {
    (0..3).flat_map(move |c| rgb.as_raw().iter().skip(c).step_by(3).copied())
}

/// One image file at its own size, converted to RGB (as PIL's `convert("RGB")`): its planar
/// [3, H, W] pixels, height and width.
pub fn read_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize), DataError> {
    let rgb = decode(path)?.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Ok((planar(&rgb).collect(), h, w))
}

/// Every PNG/JPEG directly in `dir`, sorted by name, as `channels` (1 or 3) x size x size.
pub fn load_image_folder(dir: &Path, size: usize, channels: usize) -> Result<ImageSet, DataError> {
    if channels != 1 && channels != 3 {
        return Err(DataError::Channels { channels });
    }
    if size == 0 {
        return Err(DataError::Corrupt {
            path: dir.into(),
            reason: "the image size to resize to is 0; set unet.sample_size".into(),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.into(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(DataError::NotFound {
            dir: dir.into(),
            what: "images",
            looked_for: "*.png, *.jpg, *.jpeg".into(),
        });
    }
    let bytes = (paths.len() as u64)
        .saturating_mul((channels * size) as u64)
        .saturating_mul(size as u64);
    let available = diffuse_fs::Limit::memory().bytes;
    if bytes > available {
        return Err(DataError::TooLarge {
            dir: dir.into(),
            images: paths.len(),
            channels,
            size,
            bytes,
            available,
        });
    }
    let mut pixels = Vec::with_capacity(bytes as usize);
    for path in &paths {
        let img = decode(path)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        // Shorter side to `size`, keeping the aspect ratio (rounded as torchvision does: floor).
        let (rw, rh) = if w <= h {
            (size, (size * h) / w)
        } else {
            ((size * w) / h, size)
        };
        let resized = img.resize_exact(rw as u32, rh as u32, FilterType::Triangle);
        let (x0, y0) = ((rw - size) / 2, (rh - size) / 2);
        let cropped = resized.crop_imm(x0 as u32, y0 as u32, size as u32, size as u32);
        if channels == 1 {
            pixels.extend_from_slice(cropped.to_luma8().as_raw());
        } else {
            pixels.extend(planar(&cropped.to_rgb8()));
        }
    }
    Ok(ImageSet {
        pixels,
        channels,
        height: size,
        width: size,
        labels: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn resizes_center_crops_and_goes_planar() {
        let dir = std::env::temp_dir().join(format!("diffuse-folder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 40 x 20: a red band at the left (x < 4), green, a blue band at the right (x >= 36).
        // Resizing the shorter side to 8 gives 16 x 8 with the bands in columns < 1.6 and >= 14.4;
        // the center crop keeps columns 4..12, so only green is left (2 px clear of any blend).
        let img = RgbImage::from_fn(40, 20, |x, _| match x {
            0..4 => Rgb([255, 0, 0]),
            4..36 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        img.save(dir.join("a.png")).unwrap();
        RgbImage::from_pixel(5, 9, Rgb([9, 99, 199]))
            .save(dir.join("b.png"))
            .unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let set = load_image_folder(&dir, 8, 3).unwrap();
        assert_eq!(set.shape(), [2, 3, 8, 8]);
        let a = set.image(0);
        assert!(
            a[..64].iter().all(|v| *v == 0),
            "red plane of the crop is empty"
        );
        assert!(a[64..128].iter().all(|v| *v == 255));
        let b = set.image(1);
        assert_eq!((b[0], b[64], b[128]), (9, 99, 199));
        let gray = load_image_folder(&dir, 4, 1).unwrap();
        assert_eq!(gray.shape(), [2, 1, 4, 4]);

        std::fs::write(dir.join("c.png"), b"not a png").unwrap();
        let err = load_image_folder(&dir, 8, 3).unwrap_err().to_string();
        assert!(err.contains("c.png") && err.contains("decode"), "{err}");
    }
}
