//! Prometheus counters (SPEC §12): counts only, never request content.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sudomode_policy::Verdict;

const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    allow: AtomicU64,
    deny: AtomicU64,
    approval: AtomicU64,
    pub pending: AtomicU64,
    pub hold_seconds: Histogram,
    pub upstream_seconds: Histogram,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Leaf certificates minted (the CA counts into it).
    pub certs_issued: Arc<AtomicU64>,
}

impl Metrics {
    pub fn decided(&self, v: Verdict) {
        let c = match v {
            Verdict::Allow => &self.allow,
            Verdict::Deny => &self.deny,
            Verdict::RequireApproval => &self.approval,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream(&self, d: Duration) {
        self.upstream_seconds.observe(d);
    }

    /// Prometheus text; `extra` appends lines from other parts (certs, notifications).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE sudomode_requests_total counter");
        for (d, c) in [
            ("ALLOW", &self.allow),
            ("DENY", &self.deny),
            ("REQUIRE_APPROVAL", &self.approval),
        ] {
            let _ = writeln!(
                out,
                "sudomode_requests_total{{decision=\"{d}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# TYPE sudomode_pending_requests gauge");
        let _ = writeln!(
            out,
            "sudomode_pending_requests {}",
            self.pending.load(Ordering::Relaxed)
        );
        self.hold_seconds.render("sudomode_hold_seconds", &mut out);
        self.upstream_seconds
            .render("sudomode_upstream_seconds", &mut out);
        let _ = writeln!(out, "# TYPE sudomode_policy_reloads_total counter");
        let _ = writeln!(
            out,
            "sudomode_policy_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "sudomode_policy_reloads_total{{result=\"error\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE sudomode_certs_issued_total counter");
        let _ = writeln!(
            out,
            "sudomode_certs_issued_total {}",
            self.certs_issued.load(Ordering::Relaxed)
        );
        out.push_str(extra);
        out
    }
}
