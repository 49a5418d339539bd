//! Cache simulations and cost breakdowns on hand-checked cases.

use llmopt_analytics::{
    cache::{
        PrefixCachePolicy, ResponseCacheConfig, duplicate_analysis, prefix_cache_savings,
        prefix_reuse,
    },
    cost::{CostDimension, cost_breakdown, cost_series},
};
use llmopt_core::{
    ErrorKind, Fingerprint, Money, PriceCatalog, RequestRecord, Status, TenantId, Usage,
};

fn call(index: usize, ts_s: i64, key: u128, cost_micros: i64) -> RequestRecord {
    let mut record = RequestRecord::new(
        format!("r{index}"),
        1_700_000_000_000 + ts_s * 1000,
        "openai",
        "gpt-4o-mini",
    );
    record.fingerprints.request = Some(Fingerprint(key));
    record.cost = Some(Money::from_micros(cost_micros));
    record
}

#[test]
fn response_cache_simulation_honours_ttl_capacity_and_errors() {
    let (a, b, c) = (1, 2, 3);
    let mut failed = call(3, 30, c, 5);
    failed.status = Status::Error(ErrorKind::Upstream);
    let records = vec![
        call(0, 0, a, 10),
        call(1, 10, a, 10), // hit
        call(2, 20, b, 20),
        failed,             // not stored
        call(4, 40, c, 5),  // miss, evicts A (least recently used)
        call(5, 50, a, 10), // miss (evicted), evicts B
        call(6, 75, c, 5),  // hit: written at 40 s, 35 s old
        call(7, 200, c, 5), // expired
    ];
    let analysis =
        duplicate_analysis(&records, ResponseCacheConfig { ttl_ms: 60_000, capacity: 2 }).unwrap();
    assert_eq!(analysis.requests, 8);
    assert_eq!(analysis.hits, 2);
    assert_eq!(analysis.evictions, 2);
    assert_eq!(analysis.repeats_within_ttl, 4);
    assert_eq!(analysis.saved, Money::from_micros(15));
    assert_eq!(analysis.cost, Money::from_micros(70));
    // Input order does not matter: the simulation sorts by time.
    let mut shuffled = records.clone();
    shuffled.reverse();
    assert_eq!(
        duplicate_analysis(&shuffled, ResponseCacheConfig { ttl_ms: 60_000, capacity: 2 }).unwrap(),
        analysis
    );
    // Tenants never share entries.
    let mut other_tenant = records.clone();
    other_tenant[1].tenant = Some(TenantId::new("t2"));
    let analysis =
        duplicate_analysis(&other_tenant, ResponseCacheConfig { ttl_ms: 60_000, capacity: 2 })
            .unwrap();
    assert_eq!(analysis.hits, 1);
}

fn prompt(index: usize, ts_s: i64, input: u64, output: u64, blocks: &[u64]) -> RequestRecord {
    let mut record =
        RequestRecord::new(format!("p{index}"), 1_700_000_000_000 + ts_s * 1000, "any", "any");
    record.usage = Some(Usage { input_tokens: input, output_tokens: output, ..Usage::default() });
    record.fingerprints.prefix_blocks = blocks.to_vec();
    record
}

#[test]
fn prefix_cache_reuse_and_savings_per_provider() {
    let records = vec![
        prompt(0, 0, 2000, 100, &[1, 2, 3, 4]),
        prompt(1, 60, 1800, 50, &[1, 2, 5, 6]), // blocks 1, 2 served: 1024 tokens
        prompt(2, 420, 1500, 0, &[1, 2, 3]),    // 6 minutes idle: expired
        prompt(3, 430, 600, 0, &[1, 2]),        // below the 1,024-token minimum
    ];
    let reuse = prefix_reuse(&records, PrefixCachePolicy::provider_default(512)).unwrap();
    assert_eq!(
        (reuse.requests, reuse.blocks, reuse.blocks_seen_before, reuse.blocks_reused),
        (4, 13, 7, 2)
    );
    assert_eq!((reuse.input_tokens, reuse.cached_tokens, reuse.written_tokens), (5900, 1024, 4276));

    let catalog = PriceCatalog::builtin();
    let savings = prefix_cache_savings(&reuse, &catalog, &["gpt-4o", "claude-sonnet-4-5"]).unwrap();
    // gpt-4o: $2.50 in, $1.25 cached, $10 out per million; writes are free.
    assert_eq!(savings[0].cost_without_cache, Money(5900 * 2_500_000 + 150 * 10_000_000));
    assert_eq!(savings[0].saving, Money(1024 * 1_250_000));
    // Claude Sonnet 4.5: reads at $0.30 save 1,024 × $2.70/M, but 4,276 written tokens cost
    // $0.75/M extra each: the cache loses money on this workload.
    assert_eq!(savings[1].saving, Money(1024 * 2_700_000 - 4276 * 750_000));
    assert!(savings[1].saving.picos() < 0);

    let unlimited = prefix_reuse(&records, PrefixCachePolicy::unlimited(512)).unwrap();
    // Without TTL or minimum: r1 reuses 2 blocks, r2 reuses 1, 2, 3, r3 reuses 1, 2.
    assert_eq!(unlimited.blocks_reused, 7);
    assert_eq!(unlimited.cached_tokens, 1024 + 1500 + 600);
}

#[test]
fn cost_breakdowns_are_exact() {
    let mut records = Vec::new();
    for i in 0..1000 {
        let mut record = RequestRecord::new(
            format!("c{i}"),
            1_700_000_000_000 + i as i64 * 60_000,
            if i % 3 == 0 { "anthropic" } else { "openai" },
            if i % 3 == 0 { "claude-haiku-4-5" } else { "gpt-4o-mini" },
        );
        // 0.1 micro-dollar steps: a float sum would drift, picodollars do not.
        record.cost = if i % 10 == 9 { None } else { Some(Money(100_000 * (i as i128 % 7 + 1))) };
        record.tags.insert("feature".into(), if i % 2 == 0 { "chat" } else { "search" }.into());
        records.push(record);
    }
    let by_provider = cost_breakdown(&records, &CostDimension::Provider);
    let expected_total: Money = records.iter().filter_map(|r| r.cost).sum();
    assert_eq!(by_provider.total, expected_total);
    assert_eq!(by_provider.rows.iter().map(|r| r.cost).sum::<Money>(), expected_total);
    assert_eq!(by_provider.rows.iter().map(|r| r.cost_unknown).sum::<u64>(), 100);
    let anthropic: Money =
        records.iter().filter(|r| r.provider.0 == "anthropic").filter_map(|r| r.cost).sum();
    assert_eq!(by_provider.rows.iter().find(|r| r.key == "anthropic").unwrap().cost, anthropic);
    let by_tag = cost_breakdown(&records, &CostDimension::Tag("feature".into()));
    assert_eq!(by_tag.rows.len(), 2);
    let hourly = cost_breakdown(&records, &CostDimension::Period { window_ms: 3_600_000 });
    assert_eq!(hourly.requests, 1000);
    assert_eq!(hourly.total, expected_total);
    let series = cost_series(&records, 3_600_000);
    assert_eq!(series.iter().map(|(_, cost)| *cost).sum::<Money>(), expected_total);
    assert!(series.windows(2).all(|w| w[1].0 - w[0].0 == 3_600_000));
}
