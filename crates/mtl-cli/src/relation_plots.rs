//! The plots of a run's task relations, each as SVG and PNG:
//! `affinity.svg` and `cosine_mean.svg`, heatmaps in the colours of the run's
//! `cosine.svg` (blue for positive, red for negative, row `i` column `j`
//! holding `Z_{i→j}`; the affinities are divided by the largest absolute one,
//! named in the title, so the scale is used fully), and, once there are
//! embeddings, `task_embeddings.svg`: the tasks at their first two
//! coordinates.

use std::path::Path;

use mtl_train::relations::{
    number, Relations, TaskMatrix, AFFINITY_PLOT, COSINE_PLOT, EMBEDDING_PLOT,
};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::Result;
use crate::plot::{self, Figure, Heatmap, PlotResult};

/// Draws the relation plots of `relations` into `run_dir`.
pub fn write_plots(run_dir: &Path, relations: &Relations, names: &[String]) -> Result<()> {
    heatmap(
        &run_dir.join(AFFINITY_PLOT),
        "affinity Z(row -> column)",
        names,
        &relations.affinity,
        relations.affinity.max_abs(),
    )?;
    heatmap(
        &run_dir.join(COSINE_PLOT),
        "mean task-gradient cosine",
        names,
        &relations.cosine_mean,
        1.0,
    )?;
    if let Some(e) = &relations.embeddings {
        scatter(
            &run_dir.join(EMBEDDING_PLOT),
            &format!("task embeddings (epoch {})", e.epoch),
            names,
            &e.coords,
        )?;
    }
    Ok(())
}

/// The heatmap of `m` on the run's red–white–blue scale, divided by
/// `scale` so that the strongest entry has full colour; the title says the
/// divisor.
fn heatmap(path: &Path, title: &str, tasks: &[String], m: &TaskMatrix, scale: f64) -> Result<()> {
    let scale = if scale > 0.0 && scale.is_finite() {
        scale
    } else {
        1.0
    };
    let title = if scale == 1.0 {
        title.to_string()
    } else {
        format!("{title} / {}", number(scale))
    };
    let figure = Heatmap {
        title,
        labels: tasks.to_vec(),
        values: m.values().iter().map(|v| v / scale).collect(),
    };
    plot::save(path, &figure).map(|_| ())
}

/// The tasks at their first two embedding coordinates (the second is 0 when
/// there is one), each in its colour from the run's plots, with its name.
#[derive(Clone, Debug)]
struct Scatter {
    title: String,
    names: Vec<String>,
    points: Vec<(f64, f64)>,
}

/// Ranges around the points with the same length on both axes, so that
/// distances on the plot are distances between the embeddings.
fn square_ranges(points: &[(f64, f64)]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let bounds = |values: &mut dyn Iterator<Item = f64>| {
        values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)))
    };
    let (x0, x1) = bounds(&mut points.iter().map(|p| p.0));
    let (y0, y1) = bounds(&mut points.iter().map(|p| p.1));
    if x0 > x1 || y0 > y1 {
        return (-1.0..1.0, -1.0..1.0);
    }
    let span = (x1 - x0).max(y1 - y0);
    let half = if span > 0.0 { 0.65 * span } else { 1.0 };
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    ((cx - half)..(cx + half), (cy - half)..(cy + half))
}

impl Figure for Scatter {
    fn size(&self) -> (u32, u32) {
        (600, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PlotResult {
        let text = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| text(&e))?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(square_ranges(&self.points).0, square_ranges(&self.points).1)
            .map_err(|e| text(&e))?;
        chart
            .configure_mesh()
            .x_max_light_lines(1)
            .y_max_light_lines(1)
            .x_desc("dimension 1")
            .y_desc("dimension 2")
            .draw()
            .map_err(|e| text(&e))?;
        // Names of points that (nearly) coincide are stacked, not overprinted.
        let (xr, _) = square_ranges(&self.points);
        let near = 0.03 * (xr.end - xr.start);
        let line = |t: usize| {
            let p = self.points[t];
            (0..t)
                .filter(|&u| {
                    let q = self.points[u];
                    (p.0 - q.0).abs() < near && (p.1 - q.1).abs() < near
                })
                .count() as i32
        };
        chart
            .draw_series(
                self.points
                    .iter()
                    .zip(&self.names)
                    .enumerate()
                    .map(|(t, (&p, name))| {
                        let color = Palette99::pick(t).to_rgba();
                        EmptyElement::at(p)
                            + Circle::new((0, 0), 6, color.filled())
                            + Text::new(
                                name.clone(),
                                (9, -8 + 16 * line(t)),
                                ("sans-serif", 14).into_font(),
                            )
                    }),
            )
            .map_err(|e| text(&e))?;
        Ok(())
    }
}

fn scatter(path: &Path, title: &str, names: &[String], coords: &[Vec<f64>]) -> Result<()> {
    let figure = Scatter {
        title: title.to_string(),
        names: names.to_vec(),
        points: coords
            .iter()
            .map(|r| {
                (
                    r.first().copied().unwrap_or(0.0),
                    r.get(1).copied().unwrap_or(0.0),
                )
            })
            .collect(),
    };
    plot::save(path, &figure).map(|_| ())
}
