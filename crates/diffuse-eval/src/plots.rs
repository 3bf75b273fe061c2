//! Pictures of 2-D runs: scatter plots, panel strips (forward and reverse process) and loss curves.

use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::error::EvalError;

static FONT: Once = Once::new();

/// plotters draws text with a registered font; DejaVu Sans is embedded so no system font is needed.
pub(crate) fn ensure_font() {
    FONT.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

pub(crate) fn err(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |reason| EvalError::Plot {
        path: path.into(),
        reason,
    }
}

/// A named layer of a scatter plot: row-major (x, y) pairs.
pub struct Layer<'a> {
    pub label: &'a str,
    pub points: &'a [f32],
    pub color: RGBColor,
}

pub const DATA_COLOR: RGBColor = RGBColor(160, 160, 160);
pub const SAMPLE_COLOR: RGBColor = RGBColor(31, 119, 180);
/// Ten distinguishable colours (matplotlib's tab10), for classes.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Bounds that hold every layer, with a 5% margin, square so shapes are not distorted.
pub fn square_bounds(layers: &[&[f32]]) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for pts in layers {
        for p in pts.chunks_exact(2) {
            let (x, y) = (p[0] as f64, p[1] as f64);
            if x.is_finite() && y.is_finite() {
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            }
        }
    }
    if x0 > x1 {
        return (-1.0, 1.0, -1.0, 1.0);
    }
    let half = ((x1 - x0).max(y1 - y0) / 2.0).max(1e-6) * 1.05;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    (cx - half, cx + half, cy - half, cy + half)
}

/// One scatter plot of several layers, with a legend.
pub fn scatter(path: &Path, title: &str, layers: &[Layer]) -> Result<(), EvalError> {
    ensure_font();
    let e = err(path);
    // Drawn into a temporary file and renamed over `path` (diffuse_fs::write_with).
    diffuse_fs::write_with(path, |file| {
        let root = BitMapBackend::new(file, (640, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let (x0, x1, y0, y1) = square_bounds(&layers.iter().map(|l| l.points).collect::<Vec<_>>());
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .draw()
            .map_err(|x| e(x.to_string()))?;
        for layer in layers {
            let color = layer.color;
            chart
                .draw_series(
                    layer.points.chunks_exact(2).map(|p| {
                        Circle::new((p[0] as f64, p[1] as f64), 2, color.mix(0.5).filled())
                    }),
                )
                .map_err(|x| e(x.to_string()))?
                .label(layer.label)
                .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.6))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))
    })
}

/// A row of small scatter panels sharing one set of bounds (e.g. x_t at 10 timesteps).
pub fn strip(path: &Path, title: &str, panels: &[(String, Vec<f32>)]) -> Result<(), EvalError> {
    ensure_font();
    let e = err(path);
    let size = 220u32;
    // Drawn into a temporary file and renamed over `path` (diffuse_fs::write_with).
    diffuse_fs::write_with(path, |file| {
        let root = BitMapBackend::new(file, (size * panels.len().max(1) as u32, size + 40))
            .into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let root = root
            .titled(title, ("sans-serif", 24))
            .map_err(|x| e(x.to_string()))?;
        let (x0, x1, y0, y1) =
            square_bounds(&panels.iter().map(|p| p.1.as_slice()).collect::<Vec<_>>());
        for (area, (label, pts)) in root
            .split_evenly((1, panels.len().max(1)))
            .iter()
            .zip(panels)
        {
            let mut chart = ChartBuilder::on(area)
                .caption(label, ("sans-serif", 16))
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
                .draw_series(pts.chunks_exact(2).map(|p| {
                    Circle::new(
                        (p[0] as f64, p[1] as f64),
                        1,
                        SAMPLE_COLOR.mix(0.5).filled(),
                    )
                }))
                .map_err(|x| e(x.to_string()))?;
        }
        root.present().map_err(|x| e(x.to_string()))
    })
}

/// The loss per step (gray) and its moving average over `window` steps (blue), on a linear axis
/// from 0 to 1.2x the largest moving average (single noisy steps above it are clipped);
/// `loss_name` goes in the title.
pub fn loss_curve(
    path: &Path,
    loss_name: &str,
    losses: &[f32],
    window: usize,
) -> Result<(), EvalError> {
    ensure_font();
    let e = err(path);
    // Drawn into a temporary file and renamed over `path` (diffuse_fs::write_with).
    diffuse_fs::write_with(path, |file| {
        let root = BitMapBackend::new(file, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let w = window.max(1);
        let avg: Vec<(usize, f64)> = (0..losses.len())
            .map(|i| {
                let slice = &losses[i.saturating_sub(w - 1)..=i];
                (
                    i + 1,
                    slice.iter().map(|v| *v as f64).sum::<f64>() / slice.len() as f64,
                )
            })
            .filter(|(_, v)| v.is_finite())
            .collect();
        let top = avg.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-12) * 1.2;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("training loss ({loss_name})"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0usize..losses.len().max(1), 0.0..top)
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|x| e(x.to_string()))?;
        let raw = losses
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| (i + 1, (*v as f64).min(top)));
        chart
            .draw_series(LineSeries::new(raw, RGBColor(200, 200, 200)))
            .map_err(|x| e(x.to_string()))?
            .label("loss per step")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(200, 200, 200)));
        chart
            .draw_series(LineSeries::new(avg, SAMPLE_COLOR.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(format!("moving average ({w} steps)"))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], SAMPLE_COLOR.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))
    })
}

/// A line plot of `ys` against `xs` (NaN values skipped), log-scaled y when `log_y`.
pub fn line_plot(
    path: &Path,
    title: &str,
    points: &[(f64, f64)],
    x_label: &str,
    y_label: &str,
    log_y: bool,
) -> Result<(), EvalError> {
    ensure_font();
    let e = err(path);
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .collect();
    if pts.is_empty() {
        return Err(e("no finite points to plot".into()));
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    // Drawn into a temporary file and renamed over `path` (diffuse_fs::write_with).
    diffuse_fs::write_with(path, |file| {
        let root = BitMapBackend::new(file, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let mut chart = ChartBuilder::on(&root);
        chart
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70);
        if log_y {
            let (lo, hi) = (y0 * 0.8, (y1 * 1.25).max(y0 * 1.01));
            let c = chart
                .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
                .map_err(|x| e(x.to_string()))?;
            draw_lines(c, pts, x_label, y_label).map_err(&e)?;
        } else {
            let pad = ((y1 - y0) * 0.05).max(1e-12);
            let c = chart
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(|x| e(x.to_string()))?;
            draw_lines(c, pts, x_label, y_label).map_err(&e)?;
        }
        root.present().map_err(|x| e(x.to_string()))
    })
}

/// The mesh, labels and line of [`line_plot`] on either y axis.
fn draw_lines<Y>(
    mut chart: ChartContext<'_, BitMapBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    pts: Vec<(f64, f64)>,
    x_label: &str,
    y_label: &str,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(x_label)
        .y_desc(y_label)
        .y_label_formatter(&|v| tick_label(*v))
        .draw()
        .map_err(|x| x.to_string())?;
    chart
        .draw_series(LineSeries::new(pts, SAMPLE_COLOR.stroke_width(2)))
        .map_err(|x| x.to_string())?;
    Ok(())
}

/// A short tick label: at most 3 significant digits, scientific notation outside [1e-3, 1e4).
fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if !(1e-3..1e4).contains(&v.abs()) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Several labelled lines on one linear y axis (NaN and infinite values skipped), coloured
/// from [`PALETTE`] in order, with a legend.
pub fn lines_plot(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    x_label: &str,
    y_label: &str,
) -> Result<(), EvalError> {
    ensure_font();
    let e = err(path);
    let finite: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            (
                name.as_str(),
                pts.iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect(),
            )
        })
        .collect();
    let all: Vec<(f64, f64)> = finite.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if all.is_empty() {
        return Err(e("no finite points to plot".into()));
    }
    let (x0, x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let pad = ((y1 - y0) * 0.05).max(1e-12);
    diffuse_fs::write_with(path, |file| {
        let root = BitMapBackend::new(file, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(x_label)
            .y_desc(y_label)
            .y_label_formatter(&|v| tick_label(*v))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        for (i, (name, pts)) in finite.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|x| e(x.to_string()))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::tick_label;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.800000000001), "0.8");
        assert_eq!(tick_label(0.0400000000004), "0.04");
        assert_eq!(tick_label(0.1234567), "0.123");
        assert_eq!(tick_label(12.5), "12.5");
        assert_eq!(tick_label(2000.0), "2000");
        assert_eq!(tick_label(1.5e-5), "1.50e-5");
        assert_eq!(tick_label(0.0), "0");
    }
}
