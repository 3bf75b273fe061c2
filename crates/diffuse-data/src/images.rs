//! Image datasets as 8-bit pixels in [N, C, H, W] order, and their map to model space [-1, 1].

/// N images of C channels, H x W pixels, stored as u8 in [N, C, H, W] (C order).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// One class label per image, where the format has them.
    pub labels: Option<Vec<u8>>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_size()
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Values per image: C x H x W.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.image_size();
        &self.pixels[i * s..(i + 1) * s]
    }

    /// The [N, C, H, W] shape.
    pub fn shape(&self) -> [usize; 4] {
        [self.len(), self.channels, self.height, self.width]
    }
}

/// Pixel value v in 0..=255 to model space: v / 127.5 - 1, so 0 -> -1 and 255 -> 1 (DDPM, section 4).
pub fn to_model_space(v: u8) -> f32 {
    v as f32 / 127.5 - 1.0
}

/// Model space back to 8-bit: clamp to [-1, 1], then round((x + 1) * 127.5).
pub fn to_pixel(x: f32) -> u8 {
    ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Mirrors one [C, H, W] image left to right, in place (CIFAR-10's random horizontal flips).
pub fn flip_horizontal(image: &mut [f32], width: usize) {
    for row in image.chunks_exact_mut(width) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_maps_round_trip_and_hit_the_ends() {
        assert_eq!(to_model_space(0), -1.0);
        assert_eq!(to_model_space(255), 1.0);
        for v in 0..=255u8 {
            assert_eq!(to_pixel(to_model_space(v)), v);
        }
        assert_eq!(to_pixel(3.0), 255);
        assert_eq!(to_pixel(f32::NEG_INFINITY), 0);
    }

    #[test]
    fn flip_mirrors_each_row_of_each_channel() {
        let mut img = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]; // C = 2, H = 2, W = 2
        flip_horizontal(&mut img, 2);
        assert_eq!(img, vec![2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 7.0]);
    }
}
