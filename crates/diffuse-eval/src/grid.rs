//! Pictures of image runs: a titled grid of 8-bit images (sample grids, progressive generation,
//! forward noising, interpolation).

use std::path::Path;

use plotters::prelude::*;

use crate::error::EvalError;
use crate::plots::{ensure_font, err};

/// Images as 8-bit pixels in [N, C, H, W] order, C = 1 (gray) or 3 (RGB).
pub struct Images<'a> {
    pub pixels: &'a [u8],
    pub shape: [usize; 4],
}

const PAD: u32 = 2;
const TITLE_HEIGHT: u32 = 36;

/// Draws `images` row-major in a grid of `cols` columns, each pixel as a `scale` x `scale` square,
/// on a gray background, with `title` above.
pub fn image_grid(
    path: &Path,
    title: &str,
    images: &Images,
    cols: usize,
    scale: u32,
) -> Result<(), EvalError> {
    ensure_font();
    let e = err(path);
    let [n, c, h, w] = images.shape;
    if c != 1 && c != 3 {
        return Err(e(format!("images must have 1 or 3 channels, got {c}")));
    }
    if images.pixels.len() != n * c * h * w || n == 0 || cols == 0 {
        return Err(e(format!(
            "{} pixels do not make {n} images of shape {c}x{h}x{w} in {cols} columns",
            images.pixels.len()
        )));
    }
    let rows = n.div_ceil(cols);
    let (tile_w, tile_h) = (w as u32 * scale, h as u32 * scale);
    let width = (cols as u32 * (tile_w + PAD) + PAD).max(320);
    let height = rows as u32 * (tile_h + PAD) + PAD + TITLE_HEIGHT;
    // Drawn into a temporary file and renamed over `path` (diffuse_fs::write_with).
    diffuse_fs::write_with(path, |file| {
        let root = BitMapBackend::new(file, (width, height)).into_drawing_area();
        root.fill(&RGBColor(128, 128, 128))
            .map_err(|x| e(x.to_string()))?;
        root.draw_text(title, &("sans-serif", 18).into_font().color(&WHITE), (6, 8))
            .map_err(|x| e(x.to_string()))?;
        let plane = h * w;
        for i in 0..n {
            let img = &images.pixels[i * c * plane..(i + 1) * c * plane];
            let x0 = PAD + (i % cols) as u32 * (tile_w + PAD);
            let y0 = TITLE_HEIGHT + PAD + (i / cols) as u32 * (tile_h + PAD);
            for y in 0..h {
                for x in 0..w {
                    let p = y * w + x;
                    let color = if c == 1 {
                        RGBColor(img[p], img[p], img[p])
                    } else {
                        RGBColor(img[p], img[plane + p], img[2 * plane + p])
                    };
                    let (px, py) = (
                        (x0 + x as u32 * scale) as i32,
                        (y0 + y as u32 * scale) as i32,
                    );
                    root.draw(&Rectangle::new(
                        [(px, py), (px + scale as i32, py + scale as i32)],
                        color.filled(),
                    ))
                    .map_err(|x| e(x.to_string()))?;
                }
            }
        }
        root.present().map_err(|x| e(x.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_drawn_and_bad_shapes_are_errors() {
        let dir = std::env::temp_dir().join(format!("diffuse-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("grid.png");
        let pixels: Vec<u8> = (0..3 * 4 * 4).map(|v| (v * 5) as u8).collect();
        let images = Images {
            pixels: &pixels,
            shape: [3, 1, 4, 4],
        };
        image_grid(&path, "three", &images, 2, 3).unwrap();
        let png = image::open(&path).unwrap().to_rgb8();
        // Image 1 (second column), pixel (0, 0) has value 16 * 5 = 80.
        let (x, y) = (PAD + 4 * 3 + PAD, TITLE_HEIGHT + PAD);
        // The whole 3x3 block of that pixel, and nothing of its neighbour's.
        for (dx, dy) in [(0, 0), (1, 1), (2, 2), (2, 0)] {
            assert_eq!(png.get_pixel(x + dx, y + dy).0, [80, 80, 80]);
        }
        assert_eq!(png.get_pixel(x + 3, y).0, [85, 85, 85]);
        let bad = Images {
            pixels: &pixels[1..],
            shape: [3, 1, 4, 4],
        };
        assert!(image_grid(&path, "bad", &bad, 2, 3).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
