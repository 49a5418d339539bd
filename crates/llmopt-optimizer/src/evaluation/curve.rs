//! RouteLLM's routing metrics (Ong et al., "RouteLLM: Learning to Route LLMs with Preference
//! Data", 2024, §5.1) as pure functions.
//!
//! - **PGR**, the performance gap recovered: `(quality − weak) / (strong − weak)`, where `weak`
//!   and `strong` are the qualities of sending every prompt to one model. 0 is the weak model's
//!   quality, 1 the strong model's.
//! - **The curve**: PGR against the share of calls sent to the strong model, one point per
//!   operating point of a router (a threshold, a quality target). Both ends are always
//!   reachable (everything weak: (0, 0); everything strong: (1, 1)) and are added here.
//!   Between two operating points the curve is the straight line: sending each prompt to one of
//!   two routers at random reaches every point between them in expectation. Points are taken
//!   as measured, in order of strong share, never replaced by a hull that would flatter them.
//! - **CPT(x)**, the call-performance threshold: the smallest strong share at which the curve
//!   reaches PGR x.
//! - **APGR**: the area under the curve over strong shares 0 to 1, by the trapezoid rule on
//!   the piecewise-linear curve (RouteLLM approximates the same area with ten evenly spaced
//!   strong shares; the trapezoid is its limit). A random router has APGR 0.5.

use serde::Serialize;

/// The performance gap recovered; `None` when both models score the same (no gap).
pub fn pgr(quality: f64, weak_quality: f64, strong_quality: f64) -> Option<f64> {
    let gap = strong_quality - weak_quality;
    (gap.abs() > 1e-12).then(|| (quality - weak_quality) / gap)
}

/// One operating point: the share of calls sent to the strong model and the PGR reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub strong_share: f64,
    pub pgr: f64,
}

/// PGR against strong-call share, with both ends added, sorted by strong share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingCurve {
    points: Vec<CurvePoint>,
}

impl RoutingCurve {
    /// The curve through `points` (non-finite ones are dropped; shares are clamped to [0, 1])
    /// and the two ends (0, 0) and (1, 1).
    pub fn new(points: impl IntoIterator<Item = CurvePoint>) -> RoutingCurve {
        let mut all: Vec<CurvePoint> = points
            .into_iter()
            .filter(|p| p.strong_share.is_finite() && p.pgr.is_finite())
            .map(|p| CurvePoint { strong_share: p.strong_share.clamp(0.0, 1.0), pgr: p.pgr })
            .collect();
        all.push(CurvePoint { strong_share: 0.0, pgr: 0.0 });
        all.push(CurvePoint { strong_share: 1.0, pgr: 1.0 });
        all.sort_by(|a, b| a.strong_share.total_cmp(&b.strong_share).then(a.pgr.total_cmp(&b.pgr)));
        RoutingCurve { points: all }
    }

    /// The points, ends included, by strong share.
    pub fn points(&self) -> &[CurvePoint] {
        &self.points
    }

    /// CPT(`target`): the smallest strong share at which the piecewise-linear curve reaches PGR
    /// `target`; `None` only for a target above every point (above 1 on a curve that never
    /// beats the strong model).
    pub fn cpt(&self, target: f64) -> Option<f64> {
        let first = self.points.first()?;
        if first.pgr >= target {
            return Some(first.strong_share);
        }
        self.points.windows(2).find_map(|pair| {
            let (a, b) = (pair[0], pair[1]);
            if a.pgr >= target {
                Some(a.strong_share)
            } else if b.pgr >= target {
                let t = (target - a.pgr) / (b.pgr - a.pgr);
                Some(a.strong_share + t * (b.strong_share - a.strong_share))
            } else {
                None
            }
        })
    }

    /// APGR: the area under the piecewise-linear curve over strong shares [0, 1].
    pub fn apgr(&self) -> f64 {
        self.points
            .windows(2)
            .map(|pair| {
                (pair[1].strong_share - pair[0].strong_share) * (pair[0].pgr + pair[1].pgr) / 2.0
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_router_is_the_diagonal() {
        let curve = RoutingCurve::new([]);
        assert!((curve.apgr() - 0.5).abs() < 1e-12);
        assert_eq!(curve.cpt(0.5), Some(0.5));
        assert_eq!(curve.cpt(0.8), Some(0.8));
        assert_eq!(curve.cpt(1.5), None);
    }

    #[test]
    fn pgr_needs_a_gap() {
        assert_eq!(pgr(0.75, 0.5, 1.0), Some(0.5));
        assert_eq!(pgr(0.7, 0.7, 0.7), None);
    }
}
