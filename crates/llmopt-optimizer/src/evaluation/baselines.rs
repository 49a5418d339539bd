//! Tallies of a routing over the dataset, and the baselines that need no replay: random
//! routing (analytic) and the best per-scope oracle.

use serde::Serialize;

use super::LabelledItem;

/// What a routing of the whole dataset adds up to. Floats, so that an expected routing
/// (random) is a tally too; costs are summed exactly in `Money` before they get here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Prompts the weak model answered.
    pub weak_calls: f64,
    /// Sum of the served models' scores.
    pub quality: f64,
    /// Sum of the served models' costs, USD.
    pub cost_usd: f64,
}

/// Per prompt: the two models' scores and costs (USD, from exact `Money`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PricedItem {
    pub strong: f64,
    pub weak: f64,
    pub strong_cost_usd: f64,
    pub weak_cost_usd: f64,
}

impl PricedItem {
    pub fn tally(&self, weak: bool) -> Tally {
        if weak {
            Tally { weak_calls: 1.0, quality: self.weak, cost_usd: self.weak_cost_usd }
        } else {
            Tally { weak_calls: 0.0, quality: self.strong, cost_usd: self.strong_cost_usd }
        }
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.weak_calls += other.weak_calls;
        self.quality += other.quality;
        self.cost_usd += other.cost_usd;
    }
}

/// The tally of a routing given per prompt (`true`: the weak model served it).
pub fn tally(items: &[PricedItem], served_weak: &[bool]) -> Tally {
    let mut total = Tally::default();
    for (item, &weak) in items.iter().zip(served_weak) {
        total += item.tally(weak);
    }
    total
}

/// Everything strong (`false`) or everything weak (`true`).
pub fn all_to(items: &[PricedItem], weak: bool) -> Tally {
    let mut total = Tally::default();
    for item in items {
        total += item.tally(weak);
    }
    total
}

/// Random routing that sends each prompt to the strong model with probability
/// `strong_share`: the expected tally.
pub fn random_tally(strong: &Tally, weak: &Tally, strong_share: f64) -> Tally {
    let p = strong_share.clamp(0.0, 1.0);
    Tally {
        weak_calls: (1.0 - p) * weak.weak_calls,
        quality: p * strong.quality + (1.0 - p) * weak.quality,
        cost_usd: p * strong.cost_usd + (1.0 - p) * weak.cost_usd,
    }
}

/// The smallest strong share at which random routing keeps `target` × the strong model's
/// quality: 0 when the weak model alone meets it.
pub fn random_share_for(strong: &Tally, weak: &Tally, target: f64) -> f64 {
    let gap = strong.quality - weak.quality;
    if gap <= 0.0 {
        return 0.0;
    }
    ((target * strong.quality - weak.quality) / gap).clamp(0.0, 1.0)
}

/// The best per-scope oracle: knowing every label, route whole scopes (workloads) to the weak
/// model, smallest quality loss per call first, skipping a scope that would take the quality
/// below `target` × the strong model's and going on with the smaller ones.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeOracle {
    /// Whether each scope is routed at the target.
    pub routed: Vec<bool>,
    pub headline: Tally,
    /// The tallies of routing the first 0, 1, 2, … scopes in that order (its curve).
    pub prefixes: Vec<Tally>,
}

pub fn scope_oracle(
    items: &[PricedItem],
    scope_of: &[usize],
    scopes: usize,
    target: f64,
) -> ScopeOracle {
    let mut per_scope = vec![(0usize, Tally::default(), Tally::default()); scopes];
    for (item, &scope) in items.iter().zip(scope_of) {
        let entry = &mut per_scope[scope];
        entry.0 += 1;
        entry.1 += item.tally(false);
        entry.2 += item.tally(true);
    }
    let loss_per_call = |s: usize| {
        let (n, strong, weak) = &per_scope[s];
        (strong.quality - weak.quality) / (*n).max(1) as f64
    };
    let mut order: Vec<usize> = (0..scopes).filter(|&s| per_scope[s].0 > 0).collect();
    order.sort_by(|&a, &b| loss_per_call(a).total_cmp(&loss_per_call(b)).then(a.cmp(&b)));
    let all_strong = all_to(items, false);
    let floor = target * all_strong.quality;
    let switch = |tally: &mut Tally, s: usize| {
        let (_, strong, weak) = &per_scope[s];
        tally.weak_calls += weak.weak_calls;
        tally.quality += weak.quality - strong.quality;
        tally.cost_usd += weak.cost_usd - strong.cost_usd;
    };
    let mut prefixes = vec![all_strong];
    let mut running = all_strong;
    for &s in &order {
        switch(&mut running, s);
        prefixes.push(running);
    }
    let mut routed = vec![false; scopes];
    let mut headline = all_strong;
    for &s in &order {
        let mut candidate = headline;
        switch(&mut candidate, s);
        if candidate.quality >= floor - 1e-9 {
            headline = candidate;
            routed[s] = true;
        }
    }
    ScopeOracle { routed, headline, prefixes }
}

/// Scores as the routers see them.
pub fn priced(items: &[LabelledItem], costs: &[(f64, f64)]) -> Vec<PricedItem> {
    items
        .iter()
        .zip(costs)
        .map(|(item, &(strong_cost_usd, weak_cost_usd))| PricedItem {
            strong: item.strong,
            weak: item.weak,
            strong_cost_usd,
            weak_cost_usd,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(strong: f64, weak: f64) -> PricedItem {
        PricedItem { strong, weak, strong_cost_usd: 1.0, weak_cost_usd: 0.1 }
    }

    #[test]
    fn the_oracle_routes_the_cheapest_scopes_within_the_target() {
        // Scope 0: no loss; scope 1: loses 1 of 2; scope 2: loses 1 of 4 (smaller per call).
        let items = [
            item(1.0, 1.0),
            item(1.0, 1.0),
            item(1.0, 0.0),
            item(1.0, 1.0),
            item(1.0, 0.0),
            item(1.0, 1.0),
            item(1.0, 1.0),
            item(1.0, 1.0),
        ];
        let scope_of = [0, 0, 1, 1, 2, 2, 2, 2];
        // Target 7/8: route scope 0 (free) and scope 2 (−1), not scope 1 (another −1).
        let oracle = scope_oracle(&items, &scope_of, 3, 7.0 / 8.0);
        assert_eq!(oracle.routed, vec![true, false, true]);
        assert_eq!(oracle.headline.weak_calls, 6.0);
        assert_eq!(oracle.headline.quality, 7.0);
        assert_eq!(
            oracle.prefixes.iter().map(|t| t.weak_calls).collect::<Vec<_>>(),
            vec![0.0, 2.0, 6.0, 8.0]
        );
    }

    #[test]
    fn random_routing_at_a_target() {
        let strong = Tally { weak_calls: 0.0, quality: 80.0, cost_usd: 10.0 };
        let weak = Tally { weak_calls: 100.0, quality: 60.0, cost_usd: 1.0 };
        let share = random_share_for(&strong, &weak, 0.95);
        assert!((share - 0.8).abs() < 1e-12);
        let expected = random_tally(&strong, &weak, share);
        assert!((expected.quality - 76.0).abs() < 1e-9);
        assert!((expected.weak_calls - 20.0).abs() < 1e-9);
    }
}
