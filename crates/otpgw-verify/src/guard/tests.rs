//! The guard on simulated time: honest prefixes, an attack, probes, lifts.

use super::*;

/// A small deterministic generator (tests only).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Pending approvals: (when typed, prefix, sent at).
type Typing = Vec<(u64, &'static str, u64)>;

/// One honest request to `prefix` at `now`: passes (then is sent, and typed back
/// 2 to 8 s later, 9 times in 10) or is refused.
fn honest(
    g: &Guard,
    b: &Arc<str>,
    prefix: &'static str,
    now: u64,
    r: &mut Lcg,
    t: &mut Typing,
) -> bool {
    let v = g.decide(b, prefix, "GB", now);
    if matches!(v, Verdict::Blocked { .. }) {
        return false;
    }
    g.sent(b, prefix, "GB", now);
    if r.below(10) < 9 {
        t.push((now + 2_000 + r.below(6_000), prefix, now));
    }
    true
}

fn type_due(g: &Guard, b: &Arc<str>, now: u64, t: &mut Typing) {
    t.retain(|&(at, prefix, sent)| {
        if at <= now {
            g.approved(b, prefix, sent, now);
        }
        at > now
    });
}

const HONEST: [&str; 4] = ["447400", "447401", "336123", "491511"];

#[test]
fn honest_traffic_is_never_blocked_however_busy() {
    let g = Guard::new(GuardConfig::default());
    let b: Arc<str> = "bank".into();
    let (mut r, mut t) = (Lcg(7), Vec::new());
    let mut refused = 0;
    // 30 minutes, 20 requests a second, most to one prefix, in bursts.
    for ms in (0..1_800_000u64).step_by(50) {
        type_due(&g, &b, ms, &mut t);
        let burst = (ms / 60_000) % 3 == 0;
        let p = if burst || r.below(2) == 0 {
            HONEST[0]
        } else {
            HONEST[1 + r.below(3) as usize]
        };
        if !honest(&g, &b, p, ms, &mut r, &mut t) {
            refused += 1;
        }
    }
    assert_eq!(refused, 0);
    assert!(g.blocks(1_800_000).is_empty());
}

/// Honest users on four prefixes and an attacker on random numbers of one more at
/// `rate` a second; returns (codes the attack got, ms to the block, honest refused).
fn attack(rate: u64) -> (u32, u64, u32) {
    let g = Guard::new(GuardConfig::default());
    let b: Arc<str> = "bank".into();
    let (mut r, mut t) = (Lcg(11), Vec::new());
    let (mut got, mut blocked_at, mut refused) = (0, None, 0);
    let start = 600_000; // after ten minutes of honest traffic
    for ms in (0..start + 300_000u64).step_by(10) {
        type_due(&g, &b, ms, &mut t);
        if ms % 200 == 0 && !honest(&g, &b, HONEST[r.below(4) as usize], ms, &mut r, &mut t) {
            refused += 1;
        }
        if ms >= start && ms % (1000 / rate) == 0 {
            match g.decide(&b, "447700", "GB", ms) {
                Verdict::Blocked { .. } => {
                    blocked_at.get_or_insert(ms - start);
                }
                _ => {
                    g.sent(&b, "447700", "GB", ms);
                    got += 1;
                }
            }
        }
    }
    (got, blocked_at.expect("the attack was blocked"), refused)
}

#[test]
fn an_attack_on_one_prefix_is_cut_within_200_codes_and_60_s() {
    for rate in [1, 5, 8] {
        let (got, ms, refused) = attack(rate);
        assert!(got <= 200, "{rate}/s: {got} codes went to the attack");
        assert!(ms <= 60_000, "{rate}/s: blocked after {ms} ms");
        assert_eq!(refused, 0, "{rate}/s: honest users refused");
    }
}

#[test]
fn probes_renew_a_bad_block_and_lift_a_good_one() {
    let cfg = GuardConfig {
        block: Duration::from_secs(60),
        ..GuardConfig::default()
    };
    let g = Guard::new(cfg);
    let b: Arc<str> = "shop".into();
    let (mut r, mut t) = (Lcg(3), Vec::new());
    // Honest elsewhere for 5 minutes; 40 codes nobody types to 449000.
    for ms in (0..300_000u64).step_by(100) {
        type_due(&g, &b, ms, &mut t);
        honest(&g, &b, HONEST[r.below(4) as usize], ms, &mut r, &mut t);
        if ms < 40_000 && ms % 1000 == 0 {
            g.sent(&b, "449000", "GB", ms);
        }
    }
    let now = 300_000;
    let Verdict::Blocked { until_ms } = g.decide(&b, "449000", "GB", now) else {
        panic!("not blocked");
    };
    assert_eq!(until_ms, now + 60_000);
    let v = &g.blocks(now)[0];
    assert_eq!(
        (v.prefix.as_str(), v.sent, v.approved, v.level),
        ("449000", 40, 0, 0)
    );
    // Probing: one request in ten passes; probes nobody types renew it, doubled.
    let mut now = until_ms;
    let mut probes = 0;
    let renewed = loop {
        now += 500;
        match g.decide(&b, "449000", "GB", now) {
            Verdict::Probe => {
                probes += 1;
                g.sent(&b, "449000", "GB", now);
            }
            Verdict::Blocked { until_ms } if until_ms > now + 60_000 => break until_ms,
            _ => {}
        }
        assert!(now < 900_000, "never renewed");
    };
    assert_eq!(renewed - now, 120_000, "the second block is twice as long");
    // Ten judged, and those sent while the first were within their grace.
    assert!((10..=15).contains(&probes), "{probes} probes");
    assert!(g.blocks(now)[0].level == 1);
    // After it, probes that are typed lift it.
    let mut now = renewed;
    loop {
        now += 500;
        type_due(&g, &b, now, &mut t);
        match g.decide(&b, "449000", "GB", now) {
            Verdict::Pass => break,
            Verdict::Probe => {
                g.sent(&b, "449000", "GB", now);
                t.push((now + 3_000, "449000", now));
            }
            Verdict::Blocked { .. } => {}
        }
        assert!(now < renewed + 600_000, "never lifted");
    }
    assert!(g.blocks(now).is_empty());
}

#[test]
fn an_admin_lifts_a_block_and_prefixes_are_bounded() {
    let g = Guard::new(GuardConfig {
        max_prefixes: 3,
        ..GuardConfig::default()
    });
    let b: Arc<str> = "bank".into();
    for s in 0..40 {
        g.sent(&b, "449000", "GB", s * 100);
    }
    assert!(matches!(
        g.decide(&b, "449000", "GB", 60_000),
        Verdict::Blocked { .. }
    ));
    assert!(g.lift("bank", "449000"));
    assert!(!g.lift("bank", "449000"));
    assert_eq!(g.decide(&b, "449000", "GB", 60_001), Verdict::Pass);
    // Three prefixes fill it; a fourth is not tracked while they are recent.
    for p in ["1", "2", "3", "4"] {
        g.sent(&b, p, "GB", 61_000);
    }
    assert_eq!(g.inner.lock().cells.len(), 3);
    // Once they are idle past the window, a new one takes their place.
    g.sent(&b, "5", "GB", 61_000 + 700_000);
    assert_eq!(g.inner.lock().cells.len(), 1);
    assert_eq!(g.prefix("447400123456"), "447400");
}

#[test]
fn a_slow_prefix_is_judged_on_its_probes_however_slow() {
    let g = Guard::new(GuardConfig {
        block: Duration::from_secs(60),
        ..GuardConfig::default()
    });
    let b: Arc<str> = "bank".into();
    for s in 0..40 {
        g.sent(&b, "449000", "GB", s * 100);
    }
    let Verdict::Blocked { until_ms } = g.decide(&b, "449000", "GB", 60_000) else {
        panic!("not blocked");
    };
    // One request every 30 s: a probe every 5 minutes, ten of them in 50 minutes,
    // far more than the 10-minute window. They are judged all the same.
    let mut now = until_ms;
    let renewed = loop {
        now += 30_000;
        match g.decide(&b, "449000", "GB", now) {
            Verdict::Probe => g.sent(&b, "449000", "GB", now),
            Verdict::Blocked { until_ms } if until_ms > now + 60_000 => break until_ms,
            Verdict::Blocked { until_ms } => assert!(until_ms > now, "Retry-After of 0"),
            Verdict::Pass => panic!("lifted without a typed probe"),
        }
        assert!(now < until_ms + 4 * 3_600_000, "never judged");
    };
    assert_eq!(renewed - now, 120_000);
}
