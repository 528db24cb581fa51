//! The figures a run draws, each written twice from one drawing routine: as
//! SVG (scalable, for documents) and as PNG (for viewers and chat tools). The
//! text of PNG files is set in the bundled DejaVu Sans, so plots look the
//! same on a machine without fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{CliError, Result};

/// The typeface of every label.
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Something drawable on any plotters backend.
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws onto `root`; errors are the backend's words.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PlotResult;
}

/// The result of drawing: the backend's error as text.
pub type PlotResult = std::result::Result<(), String>;

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Writes `figure` as `<stem>.svg` and `<stem>.png` beside each other and
/// returns both paths.
pub fn save(stem: &Path, figure: &impl Figure) -> Result<[PathBuf; 2]> {
    REGISTER.call_once(|| {
        // The bundled font is valid; a failure would only lose PNG text.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| CliError::Plot { path, message }
    };
    {
        let root = SVGBackend::new(&svg, figure.size()).into_drawing_area();
        figure.draw(&root).map_err(fail(&svg))?;
        root.present().map_err(text).map_err(fail(&svg))?;
    }
    {
        let root = BitMapBackend::new(&png, figure.size()).into_drawing_area();
        figure.draw(&root).map_err(fail(&png))?;
        root.present().map_err(text).map_err(fail(&png))?;
    }
    Ok([svg, png])
}

/// Draws the series names in a white box with a black border.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> PlotResult {
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(text)
}

/// The smallest and largest finite value, widened when they are equal.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 1.0, hi + 1.0)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

/// One line per series against the epoch (1, 2, ...).
#[derive(Clone, Debug)]
pub struct Lines {
    /// The caption.
    pub title: String,
    /// The label of the vertical axis.
    pub y_label: String,
    /// `(name, values by epoch)`.
    pub series: Vec<(String, Vec<f64>)>,
}

impl Figure for Lines {
    fn size(&self) -> (u32, u32) {
        (720, 420)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PlotResult {
        root.fill(&WHITE).map_err(text)?;
        let epochs = self.series.iter().map(|s| s.1.len()).max().unwrap_or(1);
        let (lo, hi) = range(self.series.iter().flat_map(|s| s.1.iter().copied()));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(1usize..epochs.max(2), lo..hi)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_max_light_lines(1)
            .y_max_light_lines(1)
            .x_desc("epoch")
            .y_desc(&self.y_label)
            .draw()
            .map_err(text)?;
        for (t, (name, values)) in self.series.iter().enumerate() {
            let color = Palette99::pick(t).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(e, &v)| (e + 1, v)),
                    color.stroke_width(2),
                ))
                .map_err(text)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        legend(&mut chart)
    }
}

/// A square matrix of values in `[-1, 1]`, blue for +1, white for 0, red for
/// −1, with the value written in each cell.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// The caption.
    pub title: String,
    /// Row and column names.
    pub labels: Vec<String>,
    /// Row-major values, `labels.len()` squared.
    pub values: Vec<f64>,
}

/// The colour of `v` on the red–white–blue scale of [`Heatmap`].
fn diverging(v: f64) -> RGBColor {
    let c = if v.is_finite() {
        v.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fade = (255.0 * (1.0 - c.abs())) as u8;
    if c >= 0.0 {
        RGBColor(fade, fade, 255)
    } else {
        RGBColor(255, fade, fade)
    }
}

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        let t = self.labels.len() as u32;
        (140 + 80 * t, 90 + 80 * t)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PlotResult {
        root.fill(&WHITE).map_err(text)?;
        let t = self.labels.len();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(90)
            .build_cartesian_2d(
                (0..t.saturating_sub(1)).into_segmented(),
                (0..t.saturating_sub(1)).into_segmented(),
            )
            .map_err(text)?;
        // Row i is drawn top to bottom.
        let name = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) if *i < t => {
                let row = if flip { t - 1 - i } else { *i };
                self.labels[row].clone()
            }
            _ => String::new(),
        };
        let column = |v: &SegmentValue<usize>| name(v, false);
        let row = |v: &SegmentValue<usize>| name(v, true);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(t)
            .y_labels(t)
            .x_label_formatter(&column)
            .y_label_formatter(&row)
            .draw()
            .map_err(text)?;
        let cells = (0..t).flat_map(|i| (0..t).map(move |j| (i, j)));
        let value = |i: usize, j: usize| self.values.get(i * t + j).copied().unwrap_or(0.0);
        chart
            .draw_series(cells.clone().map(|(i, j)| {
                let y = t - 1 - i;
                Rectangle::new(
                    [
                        (SegmentValue::Exact(j), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(j + 1), SegmentValue::Exact(y + 1)),
                    ],
                    diverging(value(i, j)).filled(),
                )
            }))
            .map_err(text)?;
        let style = TextStyle::from((FONT, 14.0))
            .pos(Pos::new(HPos::Center, VPos::Center))
            .color(&BLACK);
        chart
            .draw_series(cells.map(|(i, j)| {
                let y = t - 1 - i;
                Text::new(
                    format!("{:.2}", value(i, j)),
                    (SegmentValue::CenterOf(j), SegmentValue::CenterOf(y)),
                    style.clone(),
                )
            }))
            .map_err(text)?;
        Ok(())
    }
}

/// Grouped bars: for each group (a task metric), one bar per member (a
/// balancer).
#[derive(Clone, Debug)]
pub struct Bars {
    /// The caption.
    pub title: String,
    /// The group names along the horizontal axis.
    pub groups: Vec<String>,
    /// `(member name, one value per group)`.
    pub members: Vec<(String, Vec<f64>)>,
}

impl Figure for Bars {
    fn size(&self) -> (u32, u32) {
        let bars = (self.groups.len() * (self.members.len() + 1)) as u32;
        ((160 + 18 * bars).max(520), 440)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PlotResult {
        root.fill(&WHITE).map_err(text)?;
        let width = self.members.len() + 1;
        let slots = self.groups.len() * width;
        let (lo, hi) = range(
            self.members
                .iter()
                .flat_map(|m| m.1.iter().copied())
                .chain(std::iter::once(0.0)),
        );
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0..slots.max(1), lo..hi)
            .map_err(text)?;
        let groups = self.groups.clone();
        let group_of = move |x: &usize| {
            if x % width == width / 2 {
                groups.get(x / width).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_max_light_lines(1)
            .x_labels(slots.max(1))
            .x_label_formatter(&group_of)
            .draw()
            .map_err(text)?;
        for (m, (name, values)) in self.members.iter().enumerate() {
            let color = Palette99::pick(m).to_rgba();
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(g, &v)| {
                            let x = g * width + m;
                            Rectangle::new([(x, 0.0), (x + 1, v)], color.filled())
                        }),
                )
                .map_err(text)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        legend(&mut chart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_figure_is_written_as_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let lines = Lines {
            title: "loss".into(),
            y_label: "loss".into(),
            series: vec![
                ("a".into(), vec![1.0, 0.5, 0.25]),
                ("b".into(), vec![2.0, 1.0, f64::NAN]),
            ],
        };
        let heat = Heatmap {
            title: "cosine".into(),
            labels: vec!["a".into(), "b".into()],
            values: vec![1.0, -0.5, -0.5, 1.0],
        };
        let bars = Bars {
            title: "accuracy".into(),
            groups: vec!["a.accuracy".into(), "b.accuracy".into()],
            members: vec![
                ("equal".into(), vec![0.9, 0.8]),
                ("mgda".into(), vec![0.85, 0.82]),
            ],
        };
        for (stem, written) in [
            ("lines", save(&dir.path().join("lines"), &lines).unwrap()),
            ("heat", save(&dir.path().join("heat"), &heat).unwrap()),
            ("bars", save(&dir.path().join("bars"), &bars).unwrap()),
        ] {
            let svg = std::fs::read_to_string(&written[0]).unwrap();
            assert!(svg.starts_with("<svg"), "{stem}");
            let png = std::fs::read(&written[1]).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}");
            assert!(png.len() > 1000, "{stem}: {} bytes", png.len());
        }
    }

    #[test]
    fn the_colour_scale_runs_from_red_through_white_to_blue() {
        assert_eq!(diverging(1.0), RGBColor(0, 0, 255));
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(-1.0), RGBColor(255, 0, 0));
        assert_eq!(diverging(f64::NAN), RGBColor(255, 255, 255));
    }
}
