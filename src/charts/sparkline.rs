//! The text chart: one block character per column, scaled between the interval's minimum and
//! maximum, and the numbers that matter, e.g.
//! `temperature, last 24 h: ▁▂▃▅▇█▇▅▃▂ min 10 °C, max 20 °C, mean 15 °C`.

use super::Series;

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// A column without readings.
const GAP: char = ' ';

/// The blocks of a series: the column's mean, scaled between the series' min and max.
pub fn blocks(s: &Series) -> String {
    let Some(total) = s.total() else {
        return String::new();
    };
    let range = total.max - total.min;
    s.columns
        .iter()
        .map(|c| match c {
            None => GAP,
            Some(_) if range <= 0.0 => BLOCKS[3],
            Some(c) => {
                let level = ((c.mean() - total.min) / range * (BLOCKS.len() - 1) as f64).round();
                BLOCKS[(level as usize).min(BLOCKS.len() - 1)]
            }
        })
        .collect()
}

/// A number as chat shows it: at most three decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// One line for one field: `name, last <period>: <blocks> min …, max …, mean …`.
pub fn line(field: &str, unit: &str, period: &str, s: &Series) -> String {
    let with_unit = |v: f64| {
        if unit.is_empty() {
            number(v)
        } else {
            format!("{} {unit}", number(v))
        }
    };
    match s.total() {
        None => format!("{field}, last {period}: no readings"),
        Some(t) => format!(
            "{field}, last {period}: {} min {}, max {}, mean {}",
            blocks(s),
            with_unit(t.min),
            with_unit(t.max),
            with_unit(t.mean())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_scale_between_min_and_max() {
        let mut s = Series::new(0, 8, 8);
        for i in 0..8 {
            s.add(i, i as f64);
        }
        assert_eq!(blocks(&s), "▁▂▃▄▅▆▇█");
        let mut flat = Series::new(0, 3, 3);
        flat.add(0, 5.0);
        flat.add(2, 5.0);
        assert_eq!(blocks(&flat), "▄ ▄");
        assert_eq!(blocks(&Series::new(0, 3, 3)), "");
    }

    #[test]
    fn the_line_has_min_max_and_mean_with_units() {
        let mut s = Series::new(0, 4, 4);
        for (i, v) in [10.0, 20.0, 15.0, 15.0].into_iter().enumerate() {
            s.add(i as i64, v);
        }
        assert_eq!(
            line("temperature", "°C", "24 h", &s),
            "temperature, last 24 h: ▁█▅▅ min 10 °C, max 20 °C, mean 15 °C"
        );
        assert_eq!(
            line("flow", "", "7 d", &Series::new(0, 4, 4)),
            "flow, last 7 d: no readings"
        );
        assert_eq!(number(1.0 / 3.0), "0.333");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(number(1200.0), "1200");
    }
}
