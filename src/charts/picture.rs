//! The picture answer to `chart`: one panel per field, drawn with `plotters` into an RGB buffer
//! and encoded as PNG with `png`.
//!
//! Each panel shows, per pixel column, the band between the minimum and maximum (so a spike
//! stays visible whatever the downsampling) and the mean as a line; the y axis carries the
//! unit, the x axis local times. The font is embedded (`assets/`, a 14 KB subset of DejaVu
//! Sans), so a minimal Pi image without fonts draws the same picture.

use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset};
use plotters::prelude::*;

use super::Series;

/// Width of every chart, in pixels: sharp on a phone, small to upload.
pub const WIDTH: u32 = 800;
/// Height of one field's panel.
pub const PANEL_HEIGHT: u32 = 260;
/// Columns to downsample to: about the plot area's width, one column per pixel.
pub const COLUMNS: usize = 720;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const BAND: RGBColor = RGBColor(0x9e, 0xc5, 0xfe);
const LINE: RGBColor = RGBColor(0x0b, 0x5e, 0xd7);

/// One field to draw.
#[derive(Debug, Clone, Copy)]
pub struct Panel<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub series: &'a Series,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the embedded chart font cannot be read")]
    Font,
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding the chart as PNG failed: {0}")]
    Encode(#[from] png::EncodingError),
}

/// The size in pixels of a chart with `panels` fields.
pub fn size(panels: usize) -> (u32, u32) {
    (
        WIDTH,
        PANEL_HEIGHT * panels.clamp(1, super::MAX_FIELDS) as u32,
    )
}

/// Draws the panels (at most [`super::MAX_FIELDS`]) and returns the PNG file's bytes. Times are
/// shown at `offset` from UTC (the gateway's local time).
pub fn render(panels: &[Panel<'_>], offset: FixedOffset) -> Result<Vec<u8>, ChartError> {
    ensure_font()?;
    let panels = &panels[..panels.len().min(super::MAX_FIELDS)];
    let (w, h) = size(panels.len());
    let mut rgb = vec![0xffu8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (area, panel) in areas.iter().zip(panels) {
            draw_panel(area, panel, offset)?;
        }
        root.present().map_err(draw)?;
    }
    let mut out = Vec::with_capacity(64 * 1024);
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    // Flat colours compress well; the fast setting is plenty and keeps a Pi's CPU free.
    enc.set_compression(png::Compression::Fast);
    enc.write_header()?.write_image_data(&rgb)?;
    Ok(out)
}

fn draw(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(()).ok_or(ChartError::Font)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Panel<'_>,
    offset: FixedOffset,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let s = p.series;
    let (lo, hi) = match s.total() {
        Some(t) if t.max > t.min => {
            let pad = (t.max - t.min) * 0.08;
            (t.min - pad, t.max + pad)
        }
        Some(t) => (t.min - 1.0, t.max + 1.0),
        None => (0.0, 1.0),
    };
    let span = s.to - s.from;
    let caption = match (p.unit.is_empty(), s.total()) {
        (_, None) => format!("{}: no readings", p.name),
        (true, Some(t)) => format!(
            "{}  min {}  max {}  mean {}",
            p.name,
            super::sparkline::number(t.min),
            super::sparkline::number(t.max),
            super::sparkline::number(t.mean())
        ),
        (false, Some(t)) => format!(
            "{} ({})  min {}  max {}  mean {}",
            p.name,
            p.unit,
            super::sparkline::number(t.min),
            super::sparkline::number(t.max),
            super::sparkline::number(t.mean())
        ),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 17))
        .margin(10)
        .x_label_area_size(26)
        .y_label_area_size(64)
        .build_cartesian_2d(s.from..s.to, lo..hi)
        .map_err(draw)?;
    let time_label = |ms: &i64| local_time(*ms, span, offset);
    let unit_label = |v: &f64| {
        let n = super::sparkline::number(*v);
        if p.unit.is_empty() {
            n
        } else {
            format!("{n} {}", p.unit)
        }
    };
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(5)
        .x_label_formatter(&time_label)
        .y_label_formatter(&unit_label)
        .label_style((FAMILY, 12))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(draw)?;
    let n = s.columns.len() as i64;
    let center = |i: usize| s.from + (2 * i as i64 + 1) * span / (2 * n);
    chart
        .draw_series(s.columns.iter().enumerate().filter_map(|(i, c)| {
            let c = c.as_ref()?;
            let t = center(i);
            Some(PathElement::new(vec![(t, c.min), (t, c.max)], BAND))
        }))
        .map_err(draw)?;
    // The mean, broken where there are no readings.
    for run in runs(s) {
        chart
            .draw_series(LineSeries::new(
                run.into_iter().map(|(i, v)| (center(i), v)),
                LINE.stroke_width(2),
            ))
            .map_err(draw)?;
    }
    Ok(())
}

/// Runs of consecutive columns with readings: (column, mean).
fn runs(s: &Series) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, c) in s.columns.iter().enumerate() {
        match c {
            Some(c) => current.push((i, c.mean())),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A time on the x axis: `14:30` for spans up to two days, `3 Dec` beyond.
fn local_time(ms: i64, span: i64, offset: FixedOffset) -> String {
    let Some(t) = DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    let t = t.with_timezone(&offset);
    if span <= 2 * 86_400_000 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%-d %b").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(bytes);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("a frame");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn draws_a_png_of_the_documented_size_with_the_data_on_it() {
        let mut s = Series::new(0, 86_400_000, COLUMNS);
        for i in 0..86_400 {
            let t = i as f64 / 86_400.0 * std::f64::consts::TAU;
            s.add(i * 1000, 20.0 + 5.0 * t.sin());
        }
        let mut empty = Series::new(0, 86_400_000, COLUMNS);
        empty.add(3_600_000, 1.0);
        let panels = [
            Panel {
                name: "temperature",
                unit: "°C",
                series: &s,
            },
            Panel {
                name: "flow",
                unit: "",
                series: &empty,
            },
        ];
        let png = render(&panels, FixedOffset::east_opt(3600).expect("offset")).expect("drawn");
        let (w, h, rgb) = decode(&png);
        assert_eq!((w, h), size(2));
        assert_eq!((w, h), (WIDTH, 2 * PANEL_HEIGHT));
        // The mean line's colour is on the picture: the data was drawn, not just the frame.
        let line_pixels = rgb
            .chunks(3)
            .filter(|p| p[0] == LINE.0 && p[1] == LINE.1 && p[2] == LINE.2)
            .count();
        assert!(line_pixels > 500, "{line_pixels} line pixels");
        assert!(png.len() < 200_000, "{} bytes", png.len());
    }

    #[test]
    fn no_readings_still_draw_a_frame() {
        let s = Series::new(0, 1000, 10);
        let png = render(
            &[Panel {
                name: "t",
                unit: "",
                series: &s,
            }],
            FixedOffset::east_opt(0).expect("offset"),
        )
        .expect("drawn");
        assert_eq!(decode(&png).0, WIDTH);
    }

    #[test]
    fn axis_times_are_local() {
        let offset = FixedOffset::east_opt(2 * 3600).expect("offset");
        // 2026-12-02 12:30 UTC.
        let ms = 1_796_214_600_000;
        assert_eq!(local_time(ms, 86_400_000, offset), "14:30");
        assert_eq!(local_time(ms, 7 * 86_400_000, offset), "2 Dec");
    }
}
