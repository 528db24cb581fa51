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

/// A value measured over several seeds: the mean and, with two seeds or
/// more, the standard deviation drawn as an error bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// The mean.
    pub mean: f64,
    /// The standard deviation, when there is one.
    pub std: Option<f64>,
}

impl Interval {
    fn low(&self) -> f64 {
        self.mean - self.std.unwrap_or(0.0)
    }

    fn high(&self) -> f64 {
        self.mean + self.std.unwrap_or(0.0)
    }
}

/// Height in pixels of one row of [`IntervalBars`] and [`IntervalPoints`].
const ROW_HEIGHT: u32 = 26;
/// Pixels per character of a row label (14 px DejaVu Sans is narrower).
const LABEL_CHAR: u32 = 8;
/// Colour of values better than the reference, and of the points.
const GOOD: RGBColor = RGBColor(45, 110, 180);
/// Colour of values worse than the reference, and of the baseline.
const BAD: RGBColor = RGBColor(200, 80, 60);

/// Width of a label column holding `labels`.
fn label_width<'a>(labels: impl Iterator<Item = &'a String>) -> u32 {
    labels.map(|l| l.chars().count() as u32).max().unwrap_or(4) * LABEL_CHAR + 16
}

/// The row labels of a vertical axis whose rows sit at `0, 1, ..`
/// from the bottom, `labels` listed top to bottom.
fn row_label(labels: &[String], y: f64) -> String {
    let n = labels.len() as f64;
    let row = (n - 1.0 - y).round();
    if (y - y.round()).abs() > 1e-6 || row < 0.0 || row >= n {
        return String::new();
    }
    labels[row as usize].clone()
}

/// The vertical position of row `i` of `n`, listed top to bottom.
fn row_y(n: usize, i: usize) -> f64 {
    (n - 1 - i) as f64
}

/// An error bar from `low` to `high` at height `y`, with caps.
fn error_bar(low: f64, high: f64, y: f64, color: RGBColor) -> Vec<PathElement<(f64, f64)>> {
    let style = color.stroke_width(2);
    vec![
        PathElement::new(vec![(low, y), (high, y)], style),
        PathElement::new(vec![(low, y - 0.18), (low, y + 0.18)], style),
        PathElement::new(vec![(high, y - 0.18), (high, y + 0.18)], style),
    ]
}

/// Horizontal bars, one per row from a zero line, each with an error bar of
/// one standard deviation; positive bars in blue, negative in red. Rows are
/// drawn in the order given, the first on top.
#[derive(Clone, Debug)]
pub struct IntervalBars {
    /// The caption.
    pub title: String,
    /// The label of the horizontal axis.
    pub x_label: String,
    /// `(row label, value)`, top to bottom.
    pub rows: Vec<(String, Interval)>,
}

impl Figure for IntervalBars {
    fn size(&self) -> (u32, u32) {
        let labels = label_width(self.rows.iter().map(|r| &r.0));
        (
            (labels + 560).max(640),
            110 + ROW_HEIGHT * self.rows.len() as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PlotResult {
        root.fill(&WHITE).map_err(text)?;
        let n = self.rows.len();
        let (lo, hi) = range(
            self.rows
                .iter()
                .flat_map(|(_, v)| [v.low(), v.high()])
                .chain(std::iter::once(0.0)),
        );
        let labels: Vec<String> = self.rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(label_width(labels.iter()))
            .build_cartesian_2d(lo..hi, -0.6..(n.max(1) as f64 - 0.4))
            .map_err(text)?;
        let label = |y: &f64| row_label(&labels, *y);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_max_light_lines(1)
            .y_labels(n.max(1))
            .y_label_formatter(&label)
            .y_label_style((FONT, 14))
            .x_desc(&self.x_label)
            .draw()
            .map_err(text)?;
        chart
            .draw_series(self.rows.iter().enumerate().map(|(i, (_, v))| {
                let y = row_y(n, i);
                let color = if v.mean >= 0.0 { GOOD } else { BAD };
                Rectangle::new(
                    [(0.0, y - 0.32), (v.mean, y + 0.32)],
                    color.mix(0.8).filled(),
                )
            }))
            .map_err(text)?;
        chart
            .draw_series(self.rows.iter().enumerate().flat_map(|(i, (_, v))| {
                let bars = if v.std.is_some() {
                    error_bar(v.low(), v.high(), row_y(n, i), BLACK)
                } else {
                    Vec::new()
                };
                bars.into_iter()
            }))
            .map_err(text)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, -0.6), (0.0, n as f64 - 0.4)],
                BLACK.stroke_width(1),
            )))
            .map_err(text)?;
        Ok(())
    }
}

/// One panel of [`IntervalPoints`]: one metric.
#[derive(Clone, Debug)]
pub struct PointPanel {
    /// The label of the horizontal axis.
    pub x_label: String,
    /// One value per row of the figure (`None`: the row has none).
    pub points: Vec<Option<Interval>>,
    /// The reference value drawn as a dashed vertical line, its standard
    /// deviation as a shaded band.
    pub baseline: Option<Interval>,
}

/// Side-by-side panels sharing their rows: in each, one point per row with
/// an error bar of one standard deviation, on a horizontal axis zoomed to
/// the data, and the baseline as a dashed line. The legend sits in a strip
/// of its own under the caption, never over the data.
#[derive(Clone, Debug)]
pub struct IntervalPoints {
    /// The caption.
    pub title: String,
    /// Row labels, top to bottom.
    pub rows: Vec<String>,
    /// What a point shows, for the legend (e.g. "mean ± sd over 3 seeds").
    pub point_label: String,
    /// What the dashed line shows, for the legend.
    pub baseline_label: String,
    /// One panel per metric.
    pub panels: Vec<PointPanel>,
}

/// Width in pixels of one panel's plotting area and axis.
const PANEL_WIDTH: u32 = 330;
/// Height of the caption and of the legend strip.
const CAPTION_HEIGHT: u32 = 34;
const LEGEND_HEIGHT: u32 = 28;

impl IntervalPoints {
    fn labels_width(&self) -> u32 {
        label_width(self.rows.iter())
    }

    fn has_baseline(&self) -> bool {
        self.panels.iter().any(|p| p.baseline.is_some())
    }

    /// The legend strip: a point with its error bar, then the baseline.
    fn legend<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> PlotResult {
        let y = (LEGEND_HEIGHT / 2) as i32;
        let x = self.labels_width() as i32;
        let style = TextStyle::from((FONT, 14))
            .pos(Pos::new(HPos::Left, VPos::Center))
            .color(&BLACK);
        let point = GOOD.stroke_width(2);
        area.draw(&PathElement::new(vec![(x, y), (x + 24, y)], point))
            .map_err(text)?;
        for cap in [x, x + 24] {
            area.draw(&PathElement::new(vec![(cap, y - 5), (cap, y + 5)], point))
                .map_err(text)?;
        }
        area.draw(&Circle::new((x + 12, y), 4, GOOD.filled()))
            .map_err(text)?;
        area.draw(&Text::new(
            self.point_label.clone(),
            (x + 32, y),
            style.clone(),
        ))
        .map_err(text)?;
        if self.has_baseline() {
            let x = x + 40 + LABEL_CHAR as i32 * self.point_label.chars().count() as i32;
            area.draw(&Rectangle::new(
                [(x, y - 8), (x + 24, y + 8)],
                BAD.mix(0.15).filled(),
            ))
            .map_err(text)?;
            for (a, b) in [(x, x + 7), (x + 11, x + 18), (x + 22, x + 24)] {
                area.draw(&PathElement::new(vec![(a, y), (b, y)], BAD.stroke_width(2)))
                    .map_err(text)?;
            }
            area.draw(&Text::new(self.baseline_label.clone(), (x + 32, y), style))
                .map_err(text)?;
        }
        Ok(())
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        panel: &PointPanel,
        labelled: bool,
    ) -> PlotResult {
        let n = self.rows.len();
        let (lo, hi) = range(
            panel
                .points
                .iter()
                .flatten()
                .chain(&panel.baseline)
                .flat_map(|v| [v.low(), v.high()]),
        );
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(if labelled { self.labels_width() } else { 0 })
            .build_cartesian_2d(lo..hi, -0.6..(n.max(1) as f64 - 0.4))
            .map_err(text)?;
        let label = |y: &f64| row_label(&self.rows, *y);
        let mut mesh = chart.configure_mesh();
        mesh.disable_y_mesh()
            .x_max_light_lines(1)
            .x_labels(5)
            .x_desc(&panel.x_label);
        if labelled {
            mesh.y_labels(n.max(1))
                .y_label_formatter(&label)
                .y_label_style((FONT, 14));
        } else {
            mesh.y_labels(0);
        }
        mesh.draw().map_err(text)?;
        let top = n as f64 - 0.4;
        if let Some(b) = panel.baseline {
            if b.std.is_some() {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(b.low(), -0.6), (b.high(), top)],
                        BAD.mix(0.15).filled(),
                    )))
                    .map_err(text)?;
            }
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(b.mean, -0.6), (b.mean, top)],
                    7,
                    4,
                    BAD.stroke_width(2),
                ))
                .map_err(text)?;
        }
        let points = || {
            panel
                .points
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (row_y(n, i), v)))
        };
        chart
            .draw_series(points().flat_map(|(y, v)| {
                if v.std.is_some() {
                    error_bar(v.low(), v.high(), y, GOOD)
                } else {
                    Vec::new()
                }
            }))
            .map_err(text)?;
        chart
            .draw_series(points().map(|(y, v)| Circle::new((v.mean, y), 5, GOOD.filled())))
            .map_err(text)?;
        Ok(())
    }
}

impl Figure for IntervalPoints {
    fn size(&self) -> (u32, u32) {
        let panels = self.panels.len().max(1) as u32;
        let legend = self.labels_width()
            + LABEL_CHAR * (self.point_label.len() + self.baseline_label.len()) as u32
            + 120;
        (
            (self.labels_width() + PANEL_WIDTH * panels + 20).max(legend),
            CAPTION_HEIGHT + LEGEND_HEIGHT + 70 + ROW_HEIGHT * self.rows.len() as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PlotResult {
        root.fill(&WHITE).map_err(text)?;
        let body = root.titled(&self.title, (FONT, 18)).map_err(text)?;
        let (strip, body) = body.split_vertically(LEGEND_HEIGHT);
        self.legend(&strip)?;
        let mut rest = body;
        for (k, panel) in self.panels.iter().enumerate() {
            let width = if k == 0 {
                self.labels_width() + PANEL_WIDTH
            } else {
                PANEL_WIDTH
            };
            let (area, right) = rest.split_horizontally(width);
            self.panel(&area, panel, k == 0)?;
            rest = right;
        }
        Ok(())
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
        let spread = |mean, std| Interval {
            mean,
            std: Some(std),
        };
        let bars = IntervalBars {
            title: "Δm%".into(),
            x_label: "Δm%".into(),
            rows: vec![
                ("pcgrad".into(), spread(1.5, 0.5)),
                (
                    "mgda".into(),
                    Interval {
                        mean: -2.0,
                        std: None,
                    },
                ),
            ],
        };
        let points = IntervalPoints {
            title: "a".into(),
            rows: vec!["pcgrad".into(), "mgda".into()],
            point_label: "mean ± sd over 3 seeds".into(),
            baseline_label: "single-task".into(),
            panels: vec![PointPanel {
                x_label: "accuracy".into(),
                points: vec![Some(spread(0.9, 0.01)), None],
                baseline: Some(spread(0.88, 0.02)),
            }],
        };
        for (stem, written) in [
            ("lines", save(&dir.path().join("lines"), &lines).unwrap()),
            ("heat", save(&dir.path().join("heat"), &heat).unwrap()),
            ("bars", save(&dir.path().join("bars"), &bars).unwrap()),
            ("points", save(&dir.path().join("points"), &points).unwrap()),
        ] {
            let svg = std::fs::read_to_string(&written[0]).unwrap();
            assert!(svg.starts_with("<svg"), "{stem}");
            let png = std::fs::read(&written[1]).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}");
            assert!(png.len() > 1000, "{stem}: {} bytes", png.len());
        }
    }

    #[test]
    fn row_labels_sit_on_whole_rows_listed_top_to_bottom() {
        let rows = vec!["best".to_string(), "middle".into(), "worst".into()];
        assert_eq!(row_label(&rows, 2.0), "best");
        assert_eq!(row_label(&rows, 0.0), "worst");
        assert_eq!(row_label(&rows, 0.5), "");
        assert_eq!(row_label(&rows, 3.0), "");
        assert_eq!(row_y(3, 0), 2.0);
    }

    #[test]
    fn the_colour_scale_runs_from_red_through_white_to_blue() {
        assert_eq!(diverging(1.0), RGBColor(0, 0, 255));
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(-1.0), RGBColor(255, 0, 0));
        assert_eq!(diverging(f64::NAN), RGBColor(255, 255, 255));
    }
}
