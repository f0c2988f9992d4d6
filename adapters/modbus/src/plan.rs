//! The request planner: a device's points → the fewest read requests that cover them.
//!
//! Points of the same register kind are sorted by address and merged into one request while the
//! gap between them is at most `max_gap` addresses and the request stays within the protocol's
//! limit (125 registers, 2000 bits) and the device's own `max_registers_per_request`. Reading a
//! few unused registers costs far less than another round trip, especially on a 9600-baud line.
//! The plan is computed once per device; `check` prints it.

use std::fmt;

use crate::config::{Point, RegisterKind, MAX_BITS, MAX_REGISTERS};

/// How far requests may stretch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest gap (unused addresses) between two points that still share a request.
    pub max_gap: u16,
    /// Registers per request; clamped to 1..=125.
    pub max_registers: u16,
}

impl Limits {
    fn max_count(&self, kind: RegisterKind) -> u32 {
        if kind.is_bits() {
            u32::from(MAX_BITS)
        } else {
            u32::from(self.max_registers.clamp(1, MAX_REGISTERS))
        }
    }
}

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub kind: RegisterKind,
    pub start: u16,
    pub count: u16,
    /// Indices into the device's points, in address order.
    pub points: Vec<usize>,
}

impl ReadRequest {
    /// Where point `p` starts within this request's response.
    pub fn offset_of(&self, p: &Point) -> usize {
        usize::from(p.address - self.start)
    }
}

impl fmt::Display for ReadRequest {
    /// `holding start 0 count 14`, as `check` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} start {} count {}", self.kind, self.start, self.count)
    }
}

/// Plans the reads of `points` (all of them, or those whose index `only` accepts).
/// Requests come out by kind (coil, discrete, holding, input), then by address. A point wider
/// than a request can be (the configuration refuses it) still gets a request of its own.
pub fn plan(points: &[Point], limits: Limits, only: impl Fn(usize) -> bool) -> Vec<ReadRequest> {
    let mut order: Vec<usize> = (0..points.len()).filter(|i| only(*i)).collect();
    order.sort_by_key(|&i| (points[i].kind, points[i].address, points[i].span()));
    let mut out: Vec<ReadRequest> = Vec::new();
    // The request being grown: (kind, start, end exclusive, points); u32 so that address 65535
    // plus its span cannot overflow.
    let mut current: Option<(RegisterKind, u32, u32, Vec<usize>)> = None;
    for i in order {
        let p = &points[i];
        let start = u32::from(p.address);
        let end = start + u32::from(p.span().max(1));
        let max = limits.max_count(p.kind);
        match &mut current {
            Some((kind, cs, ce, members))
                if *kind == p.kind
                    && start.saturating_sub(*ce) <= u32::from(limits.max_gap)
                    && end.max(*ce) - *cs <= max =>
            {
                *ce = end.max(*ce);
                members.push(i);
            }
            _ => {
                if let Some(done) = current.take() {
                    out.push(finish(done));
                }
                current = Some((p.kind, start, end, vec![i]));
            }
        }
    }
    if let Some(done) = current {
        out.push(finish(done));
    }
    out
}

fn finish((kind, start, end, points): (RegisterKind, u32, u32, Vec<usize>)) -> ReadRequest {
    ReadRequest {
        kind,
        // Addresses are u16 and the configuration keeps every point within 0..=65535.
        start: u16::try_from(start).unwrap_or(u16::MAX),
        count: u16::try_from(end - start).unwrap_or(u16::MAX),
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DataType, Encoding};

    fn point(kind: RegisterKind, address: u16, t: DataType) -> Point {
        Point {
            kind,
            address,
            encoding: Encoding {
                length: 10,
                ..Encoding::plain(t)
            },
        }
    }

    fn h(address: u16, t: DataType) -> Point {
        point(RegisterKind::Holding, address, t)
    }

    const LIMITS: Limits = Limits {
        max_gap: 10,
        max_registers: 125,
    };

    fn text(points: &[Point], limits: Limits) -> Vec<String> {
        plan(points, limits, |_| true)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn merges_neighbours_of_the_same_kind() {
        let points = [
            h(0, DataType::Float32), // 0-1
            h(2, DataType::Int16),   // 2
            h(10, DataType::Uint64), // 10-13, gap of 7 from 3
            point(RegisterKind::Input, 0, DataType::Int16),
            point(RegisterKind::Coil, 5, DataType::Bool),
            point(RegisterKind::Coil, 0, DataType::Bool),
        ];
        assert_eq!(
            text(&points, LIMITS),
            [
                "coil start 0 count 6",
                "holding start 0 count 14",
                "input start 0 count 1"
            ]
        );
        let reqs = plan(&points, LIMITS, |_| true);
        assert_eq!(reqs[0].points, [5, 4], "in address order");
        assert_eq!(reqs[1].points, [0, 1, 2]);
        assert_eq!(reqs[1].offset_of(&points[2]), 10);
    }

    #[test]
    fn gap_limit_is_inclusive() {
        // Gap of exactly 10 unused registers (1..=10) merges; 11 does not.
        let points = [h(0, DataType::Int16), h(11, DataType::Int16)];
        assert_eq!(text(&points, LIMITS), ["holding start 0 count 12"]);
        let points = [h(0, DataType::Int16), h(12, DataType::Int16)];
        assert_eq!(
            text(&points, LIMITS),
            ["holding start 0 count 1", "holding start 12 count 1"]
        );
        let no_gap = Limits {
            max_gap: 0,
            ..LIMITS
        };
        let points = [
            h(0, DataType::Int16),
            h(1, DataType::Int16),
            h(3, DataType::Int16),
        ];
        assert_eq!(
            text(&points, no_gap),
            ["holding start 0 count 2", "holding start 3 count 1"]
        );
    }

    #[test]
    fn requests_never_exceed_the_limits() {
        // 100 int32 points back to back: 200 registers → 125 + 75 (points are not split).
        let points: Vec<Point> = (0..100).map(|i| h(i * 2, DataType::Int32)).collect();
        let reqs = plan(&points, LIMITS, |_| true);
        assert_eq!(
            reqs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["holding start 0 count 124", "holding start 124 count 76"]
        );
        assert!(reqs.iter().all(|r| r.count <= 125));
        assert_eq!(reqs.iter().map(|r| r.points.len()).sum::<usize>(), 100);
        // A device that takes at most 10 registers per request.
        let small = Limits {
            max_registers: 10,
            ..LIMITS
        };
        let reqs = plan(&points[..10], small, |_| true);
        assert_eq!(
            reqs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["holding start 0 count 10", "holding start 10 count 10"]
        );
        // More than 125 is clamped to the protocol's limit.
        let big = Limits {
            max_registers: 1000,
            ..LIMITS
        };
        assert!(plan(&points, big, |_| true).iter().all(|r| r.count <= 125));
        // Bits: 2000 per request.
        let coils: Vec<Point> = (0..2500)
            .map(|i| point(RegisterKind::Coil, i, DataType::Bool))
            .collect();
        assert_eq!(
            text(&coils, LIMITS),
            ["coil start 0 count 2000", "coil start 2000 count 500"]
        );
    }

    #[test]
    fn overlapping_points_and_bits_of_one_register_share() {
        let mut b0 = h(7, DataType::Bool);
        b0.encoding.bit = Some(0);
        let mut b3 = h(7, DataType::Bool);
        b3.encoding.bit = Some(3);
        let points = [b0, h(6, DataType::Int32), b3];
        let reqs = plan(&points, LIMITS, |_| true);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].to_string(), "holding start 6 count 2");
        assert_eq!(reqs[0].points, [1, 0, 2]);
    }

    #[test]
    fn strings_and_the_top_of_the_address_space() {
        let points = [h(65526, DataType::String), h(65535, DataType::Int16)];
        // The string covers 65526..=65535 (length 10); the int16 overlaps its last register.
        assert_eq!(text(&points, LIMITS), ["holding start 65526 count 10"]);
    }

    #[test]
    fn plans_a_subset() {
        let points = [
            h(0, DataType::Int16),
            h(1, DataType::Int16),
            h(50, DataType::Int16),
        ];
        let reqs = plan(&points, LIMITS, |i| i != 0);
        assert_eq!(
            reqs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["holding start 1 count 1", "holding start 50 count 1"]
        );
        assert!(plan(&points, LIMITS, |_| false).is_empty());
    }
}
