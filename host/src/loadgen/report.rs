//! The figures one load run produces, as JSON (for scripts) and as a plain-text table (for
//! people), plus the side-by-side ratios when two servers ran the same scenario.

use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// Everything measured in one run against one server.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which server ("switchboard", "reference", or the URL).
    pub label: String,
    pub url: String,
    pub scenario: Scenario,
    pub joins: Joins,
    pub throughput: Throughput,
    pub quality: Quality,
    /// Absent when no server pid was given (e.g. an in-process server).
    pub server: Option<ServerCost>,
    /// The load tool's own CPU use: near 1.0 means it, not the server, may be the limit.
    pub load_tool_cpu_utilisation: f64,
    /// CPU used by everything else on the machine during the window, in cores (a shared
    /// machine disturbs the figures; see `warnings`).
    pub other_cpu_utilisation: Option<f64>,
    /// Errors the load tool's own webrtc stack logged during the window (chiefly packets it
    /// dropped itself because a viewer's reader fell behind).
    pub load_tool_webrtc_errors: u64,
    /// Conditions that make the figures less trustworthy.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub viewers: usize,
    pub rooms: usize,
    /// Length of the measurement window, seconds (after joins and warm-up).
    pub window_secs: f64,
    pub video_bitrate: u32,
    pub fps: u32,
    pub join_concurrency: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Joins {
    pub attempted: usize,
    pub failed: usize,
    /// Distinct failure reasons with their counts.
    pub failures: Vec<(String, usize)>,
    /// Milestones measured from the WHEP POST: p50 / p99 / max, milliseconds.
    pub post_to_201_ms: Percentiles,
    pub post_to_connected_ms: Percentiles,
    pub post_to_first_rtp_ms: Percentiles,
    pub post_to_first_keyframe_ms: Percentiles,
    /// Viewers that had received a keyframe by the end of the run.
    pub with_keyframe: usize,
    /// Wall time to join every viewer, seconds.
    pub total_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// RTP packets per second received by all viewers together (= forwarded by the server).
    pub forwarded_packets_per_sec: f64,
    /// RTP payload bytes per second received by all viewers together.
    pub forwarded_bytes_per_sec: f64,
    /// RTP packets per second the publishers sent.
    pub published_packets_per_sec: f64,
    /// Received / (published x viewers in the room): 1.0 means nothing went missing.
    pub delivery_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    /// Sequence gaps / packets expected, over all viewers, in the window (percent).
    pub loss_pct: f64,
    /// The worst single viewer's loss (percent).
    pub worst_viewer_loss_pct: f64,
    /// Viewers with any loss in the window.
    pub viewers_with_loss: usize,
    /// Packets that arrived late or twice, all viewers.
    pub out_of_order: u64,
    /// The worst single viewer's out-of-order count.
    pub worst_viewer_out_of_order: u64,
    /// Joined viewers that received nothing during the window.
    pub starved_viewers: usize,
    /// Publisher send stamp to viewer arrival, milliseconds.
    pub one_way_delay_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerCost {
    pub pid: u32,
    /// Server CPU seconds used during the window (user + system).
    pub cpu_secs: f64,
    /// Fraction of one core the server used during the window.
    pub cpu_utilisation: f64,
    /// Server CPU microseconds per forwarded packet.
    pub cpu_us_per_packet: f64,
    /// Forwarded packets per server CPU second.
    pub packets_per_cpu_sec: f64,
    /// Resident memory before the viewers joined and at the end of the window, KiB.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (after - before) / viewers, KiB.
    pub rss_per_viewer_kib: f64,
}

/// p50 / p99 / max of a sample set (zeros and `samples == 0` when empty).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; sorts `values`.
    pub fn of(values: &mut [f64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[i.clamp(1, values.len()) - 1]
        };
        Percentiles {
            samples: values.len(),
            p50: rank(50.0),
            p99: rank(99.0),
            max: values[values.len() - 1],
        }
    }

    pub fn of_durations_ms(durations: impl IntoIterator<Item = Duration>) -> Percentiles {
        let mut ms: Vec<f64> = durations
            .into_iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        Percentiles::of(&mut ms)
    }
}

/// Switchboard / reference, for runs of the same scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub viewers: usize,
    pub subject: String,
    pub baseline: String,
    /// Forwarded packets per CPU second, subject / baseline (higher is better).
    pub packets_per_cpu_sec_ratio: Option<f64>,
    /// CPU µs per packet, subject / baseline (lower is better).
    pub cpu_us_per_packet_ratio: Option<f64>,
    /// RSS per viewer, subject / baseline (lower is better).
    pub rss_per_viewer_ratio: Option<f64>,
    /// Join p50 POST -> first RTP, subject / baseline (lower is better).
    pub join_first_rtp_p50_ratio: Option<f64>,
    /// Delivery ratio, subject / baseline (higher is better).
    pub delivery_ratio_ratio: Option<f64>,
}

impl Comparison {
    pub fn between(subject: &Report, baseline: &Report) -> Comparison {
        let ratio = |a: f64, b: f64| (b > 0.0 && a.is_finite()).then(|| a / b);
        let cost = |f: fn(&ServerCost) -> f64| match (&subject.server, &baseline.server) {
            (Some(s), Some(b)) => ratio(f(s), f(b)),
            _ => None,
        };
        Comparison {
            viewers: subject.scenario.viewers,
            subject: subject.label.clone(),
            baseline: baseline.label.clone(),
            packets_per_cpu_sec_ratio: cost(|c| c.packets_per_cpu_sec),
            cpu_us_per_packet_ratio: cost(|c| c.cpu_us_per_packet),
            rss_per_viewer_ratio: cost(|c| c.rss_per_viewer_kib),
            join_first_rtp_p50_ratio: ratio(
                subject.joins.post_to_first_rtp_ms.p50,
                baseline.joins.post_to_first_rtp_ms.p50,
            ),
            delivery_ratio_ratio: ratio(
                subject.throughput.delivery_ratio,
                baseline.throughput.delivery_ratio,
            ),
        }
    }
}

/// Everything one invocation of the tool produced.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub machine: String,
    pub runs: Vec<Report>,
    pub comparisons: Vec<Comparison>,
}

impl Summary {
    /// Pair every run labelled `subject` with the `baseline` run of the same viewer count.
    pub fn new(machine: String, runs: Vec<Report>, subject: &str, baseline: &str) -> Summary {
        let comparisons = runs
            .iter()
            .filter(|r| r.label == subject)
            .filter_map(|s| {
                runs.iter()
                    .find(|b| b.label == baseline && b.scenario.viewers == s.scenario.viewers)
                    .map(|b| Comparison::between(s, b))
            })
            .collect();
        Summary {
            machine,
            runs,
            comparisons,
        }
    }

    /// A plain-text table: one column per run, one row per figure, then the ratios.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "machine: {}", self.machine);
        let runs = &self.runs;
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |name: &str, f: &dyn Fn(&Report) -> String| {
            rows.push((name.to_owned(), runs.iter().map(f).collect()));
        };
        let pct = |p: &Percentiles| {
            if p.samples == 0 {
                "-".to_owned()
            } else {
                format!("{:.1} / {:.1}", p.p50, p.p99)
            }
        };
        let cost = |r: &Report, f: &dyn Fn(&ServerCost) -> String| {
            r.server.as_ref().map(f).unwrap_or_else(|| "-".into())
        };
        row("server", &|r| r.label.clone());
        row("viewers / rooms", &|r| {
            format!("{} / {}", r.scenario.viewers, r.scenario.rooms)
        });
        row("video bitrate, fps", &|r| {
            format!(
                "{:.2} Mbit/s, {}",
                r.scenario.video_bitrate as f64 / 1e6,
                r.scenario.fps
            )
        });
        row("window (s)", &|r| format!("{:.1}", r.scenario.window_secs));
        row("failed joins", &|r| {
            format!("{} of {}", r.joins.failed, r.joins.attempted)
        });
        row("forwarded pkt/s", &|r| {
            format!("{:.0}", r.throughput.forwarded_packets_per_sec)
        });
        row("forwarded Mbit/s (payload)", &|r| {
            format!("{:.1}", r.throughput.forwarded_bytes_per_sec * 8.0 / 1e6)
        });
        row("delivery ratio", &|r| {
            format!("{:.4}", r.throughput.delivery_ratio)
        });
        row("server CPU (cores)", &|r| {
            cost(r, &|c| format!("{:.2}", c.cpu_utilisation))
        });
        row("server CPU µs / packet", &|r| {
            cost(r, &|c| format!("{:.2}", c.cpu_us_per_packet))
        });
        row("packets / CPU-second", &|r| {
            cost(r, &|c| format!("{:.0}", c.packets_per_cpu_sec))
        });
        row("server RSS before -> after (MiB)", &|r| {
            cost(r, &|c| {
                format!(
                    "{:.1} -> {:.1}",
                    c.rss_before_kib as f64 / 1024.0,
                    c.rss_after_kib as f64 / 1024.0
                )
            })
        });
        row("RSS per viewer (KiB)", &|r| {
            cost(r, &|c| format!("{:.0}", c.rss_per_viewer_kib))
        });
        row("loss % (all / worst viewer)", &|r| {
            format!(
                "{:.3} / {:.3}",
                r.quality.loss_pct, r.quality.worst_viewer_loss_pct
            )
        });
        row("viewers with loss", &|r| {
            r.quality.viewers_with_loss.to_string()
        });
        row("out-of-order (all / worst)", &|r| {
            format!(
                "{} / {}",
                r.quality.out_of_order, r.quality.worst_viewer_out_of_order
            )
        });
        row("starved viewers", &|r| {
            r.quality.starved_viewers.to_string()
        });
        row("one-way delay ms p50 / p99", &|r| {
            pct(&r.quality.one_way_delay_ms)
        });
        row("join POST->201 ms p50 / p99", &|r| {
            pct(&r.joins.post_to_201_ms)
        });
        row("join ->connected ms p50 / p99", &|r| {
            pct(&r.joins.post_to_connected_ms)
        });
        row("join ->first RTP ms p50 / p99", &|r| {
            pct(&r.joins.post_to_first_rtp_ms)
        });
        row("join ->keyframe ms p50 / p99", &|r| {
            pct(&r.joins.post_to_first_keyframe_ms)
        });
        row("load tool CPU (cores)", &|r| {
            format!("{:.2}", r.load_tool_cpu_utilisation)
        });
        row("other processes' CPU (cores)", &|r| {
            r.other_cpu_utilisation
                .map(|o| format!("{o:.2}"))
                .unwrap_or_else(|| "-".into())
        });

        let name_w = rows
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        let col_w: Vec<usize> = (0..runs.len())
            .map(|i| {
                rows.iter()
                    .map(|(_, v)| v[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (name, values) in &rows {
            let _ = write!(out, "{name:<name_w$}");
            for (v, w) in values.iter().zip(&col_w) {
                let _ = write!(out, " | {v:>w$}");
            }
            out.push('\n');
        }
        for r in runs.iter().filter(|r| !r.warnings.is_empty()) {
            for w in &r.warnings {
                let _ = writeln!(out, "warning ({} N={}): {w}", r.label, r.scenario.viewers);
            }
        }
        for c in &self.comparisons {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{} vs {} at N={}: packets/CPU-s {}, CPU µs/packet {}, RSS/viewer {}, \
                 join->first RTP p50 {}, delivery {}",
                c.subject,
                c.baseline,
                c.viewers,
                f(c.packets_per_cpu_sec_ratio),
                f(c.cpu_us_per_packet_ratio),
                f(c.rss_per_viewer_ratio),
                f(c.join_first_rtp_p50_ratio),
                f(c.delivery_ratio_ratio),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.samples, p.p50, p.p99, p.max), (100, 50.0, 99.0, 100.0));
        let mut one = vec![7.0];
        let p = Percentiles::of(&mut one);
        assert_eq!((p.p50, p.p99, p.max), (7.0, 7.0, 7.0));
        assert_eq!(Percentiles::of(&mut []).samples, 0);
    }
}
