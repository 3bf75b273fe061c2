//! Vector fields as arrows over point clouds: a score model's field grad log p_sigma(x) at a few
//! noise levels, drawn over the data it was trained on.

use std::path::Path;

use plotters::prelude::*;

use crate::error::EvalError;
use crate::plots::{DATA_COLOR, SAMPLE_COLOR, ensure_font, err, square_bounds};

/// One panel: its label, the points under the arrows (row-major x, y), and the arrows as
/// (x, y, dx, dy) in the points' coordinates.
pub struct FieldPanel<'a> {
    pub label: String,
    pub points: &'a [f32],
    pub arrows: Vec<[f32; 4]>,
}

/// A row of square panels sharing one set of bounds (the points' and the arrows' tails).
pub fn vector_fields(path: &Path, title: &str, panels: &[FieldPanel]) -> Result<(), EvalError> {
    ensure_font();
    let e = err(path);
    let size = 320u32;
    let tails: Vec<f32> = panels
        .iter()
        .flat_map(|p| p.arrows.iter().flat_map(|a| [a[0], a[1]]))
        .collect();
    let mut layers: Vec<&[f32]> = panels.iter().map(|p| p.points).collect();
    layers.push(&tails);
    let (x0, x1, y0, y1) = square_bounds(&layers);
    diffuse_fs::write_with(path, |file| {
        let root = BitMapBackend::new(file, (size * panels.len().max(1) as u32, size + 40))
            .into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|x| e(x.to_string()))?;
        for (area, panel) in root
            .split_evenly((1, panels.len().max(1)))
            .iter()
            .zip(panels)
        {
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.label, ("sans-serif", 16))
                .margin(6)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|x| e(x.to_string()))?;
            chart
                .configure_mesh()
                .disable_mesh()
                .disable_axes()
                .draw()
                .map_err(|x| e(x.to_string()))?;
            chart
                .draw_series(panel.points.chunks_exact(2).map(|p| {
                    Circle::new((p[0] as f64, p[1] as f64), 1, DATA_COLOR.mix(0.6).filled())
                }))
                .map_err(|x| e(x.to_string()))?;
            chart
                .draw_series(panel.arrows.iter().flat_map(|a| arrow(*a)))
                .map_err(|x| e(x.to_string()))?;
        }
        root.present().map_err(|x| e(x.to_string()))
    })
}

/// An arrow's shaft and the two strokes of its head (a third of its length, 25 degrees off).
fn arrow([x, y, dx, dy]: [f32; 4]) -> Vec<PathElement<(f64, f64)>> {
    let (x, y, dx, dy) = (x as f64, y as f64, dx as f64, dy as f64);
    let tip = (x + dx, y + dy);
    let style = SAMPLE_COLOR.stroke_width(1);
    let mut parts = vec![PathElement::new(vec![(x, y), tip], style)];
    let (s, c) = 25f64.to_radians().sin_cos();
    for sign in [-1.0, 1.0] {
        // The shaft turned back by 180 -/+ 25 degrees, a third as long.
        let (hx, hy) = (-dx / 3.0, -dy / 3.0);
        let (rx, ry) = (hx * c - sign * hy * s, sign * hx * s + hy * c);
        parts.push(PathElement::new(vec![tip, (tip.0 + rx, tip.1 + ry)], style));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_drawn() {
        let dir = std::env::temp_dir().join(format!("diffuse-field-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("field.png");
        let points = [0.0f32, 0.0, 1.0, 1.0, -1.0, 0.5];
        let panels = [FieldPanel {
            label: "sigma 1".into(),
            points: &points,
            arrows: vec![[0.5, 0.5, -0.2, -0.2], [-0.5, 0.0, 0.3, 0.0]],
        }];
        vector_fields(&path, "a field", &panels).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
