//! The fleet's replay as text (what was simulated, one block per replica, the fleet's
//! worst moment and drain, the sizing line) and as JSON (`"fleet"` beside `"targets"`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use super::{Episode, Fit, FleetReport, Go, Lead, LeadTo, ReplicaReport, Sizing};
use crate::backtest::render::{labels_text, rfc3339};
use crate::fleet::GoReason;
use crate::judge::rules::approx_secs;
use crate::units;

fn d(ms: u64) -> String {
    units::duration_ms(ms)
}

fn plural(n: usize, one: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    }
}

/// A lead's length: `~` when projected, `at least` to the end of the process.
fn lead_length(l: Lead) -> String {
    match l.to {
        LeadTo::Exhaustion(_) => d(l.ms),
        LeadTo::Projected => format!("~{}", approx_secs(l.ms as f64 / 1000.0)),
        LeadTo::ProcessEnd => format!("at least {}", d(l.ms)),
    }
}

/// A lead kept, and what it counts to.
fn kept_text(l: Lead, e: &Episode) -> String {
    let to = match (l.to, e.exhaustion) {
        (LeadTo::Exhaustion(s), Some((at, _))) => format!(" to {s} at its limit ({})", rfc3339(at)),
        (LeadTo::Projected, _) => " (the judge's projection at its go: the data shows no \
                                  exhaustion)"
            .into(),
        _ => format!(
            " (the data shows no exhaustion before the process ends, at {})",
            rfc3339(e.process_end_ms)
        ),
    };
    format!("lead kept {}{to}", lead_length(l))
}

fn go_text(g: &Go) -> String {
    match g.reason {
        GoReason::Slot => "with a slot".into(),
        GoReason::Deadline => format!(
            "anyway at its deadline (exhaustion ~{} away)",
            g.tte_s.map_or("?".into(), approx_secs)
        ),
        GoReason::MaxWait => "anyway after max_wait".into(),
        GoReason::FallbackStagger => "anyway after its fallback stagger".into(),
    }
}

/// What became of a restart that came due, in a line.
fn outcome_text(e: &Episode) -> String {
    let waited = d(e.deferred_ms());
    let until = rfc3339(e.waited_until_ms);
    match (e.outcome, e.go) {
        (_, Some(g)) if e.deferred_ms() == 0 => format!(
            "went at once {}; restarted at {} (simulated)",
            go_text(&g),
            rfc3339(g.restart_ms)
        ),
        (_, Some(g)) => format!(
            "deferred {waited}, then went {} at {until}; restarted at {} (simulated)",
            go_text(&g),
            rfc3339(g.restart_ms)
        ),
        (super::Outcome::Cleared, None) => format!(
            "deferred {waited}, then its judge found it healthy again at {until}: no restart \
             needed"
        ),
        (super::Outcome::HistoryRestart, None) => format!(
            "deferred {waited}, then its history shows a new process at {until}: nothing \
             more is known of the old one"
        ),
        (_, None) => format!("still deferred when its history ends at {until}, after {waited}"),
    }
}

fn episode_text(e: &Episode) -> String {
    let pad = format!("\n{:24}", "");
    let mut text = format!("due        {}", outcome_text(e));
    let given = e.lead_given().map(lead_length);
    match (e.lead_kept(), given) {
        (Some(kept), Some(given)) => {
            let _ = write!(
                text,
                "{pad}{}, of the {given} the judge gave",
                kept_text(kept, e)
            );
        }
        (Some(kept), None) => {
            let _ = write!(text, "{pad}{}", kept_text(kept, e));
        }
        (None, Some(given)) => {
            let _ = write!(text, "{pad}the judge gave a lead of {given}");
        }
        (None, None) => {}
    }
    if let Some((at, series)) = e.exhaustion {
        if e.exhausted_while_deferred() {
            let _ = write!(
                text,
                "{pad}exhausted while deferred: {series} at its limit at {}",
                rfc3339(at)
            );
        } else if let Some(g) = e.go.filter(|_| e.exhausted_before_restart()) {
            let _ = write!(
                text,
                "{pad}exhausted {} after its go, before the simulated restart was done: \
                 {series} at its limit at {}",
                d(at.saturating_sub(g.at_ms)),
                rfc3339(at)
            );
        }
    }
    text
}

fn overrides_text(o: &BTreeMap<GoReason, usize>) -> String {
    if o.is_empty() {
        return "no overrides".into();
    }
    let each: Vec<String> = o
        .iter()
        .map(|(r, n)| format!("{n} {}", r.as_str()))
        .collect();
    format!("overrides: {}", each.join(", "))
}

/// One replica's block.
pub fn replica_text(r: &ReplicaReport) -> String {
    let mut out = format!("replica {}: ", labels_text(&r.labels));
    if r.episodes.is_empty() {
        out.push_str("never due: its judge never found it unhealthy\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{}, deferred {} in all (longest wait {}), {}, {}",
        plural(r.restarts(), "restart"),
        d(r.deferred_ms()),
        d(r.longest_wait_ms()),
        overrides_text(&r.overrides()),
        if r.exhausted_while_deferred() {
            "exhausted while deferred"
        } else {
            "never exhausted while deferred"
        }
    );
    for e in &r.episodes {
        let _ = writeln!(out, "  {}  {}", rfc3339(e.due_ms), episode_text(e));
    }
    out
}

/// What was simulated, and how.
fn preamble(r: &FleetReport) -> String {
    let s = &r.setup;
    format!(
        "fleet: {} share K = {} (group {}), the slots stepped every {}\n  \
         simulated: a replica that may fail is restarted {} after its go \
         (--fleet-restart-cost) and is healthy from then on, until its history shows a new \
         process; its slot is given back after healthy_for {}\n  \
         T_r, restart to healthy: {} + {} = {}; a replica waiting goes anyway when \
         exhaustion is {} away ([fleet] restart_cost + 30s) or after max_wait {}\n",
        plural(r.replicas.len(), "replica"),
        plural(s.cfg.max_concurrent.max(1) as usize, "restart slot"),
        s.cfg.group,
        d(super::ms(s.tick.min(super::MAX_TICK))),
        d(super::ms(s.restart_cost)),
        d(super::ms(s.cfg.healthy_for)),
        d(super::ms(s.restart_cost)),
        d(super::ms(s.cfg.healthy_for)),
        d(super::ms(s.restart_to_healthy())),
        d(super::ms(
            s.cfg.restart_cost + crate::fleet::DEADLINE_MARGIN
        )),
        d(super::ms(s.cfg.max_wait)),
    )
}

/// The sizing rule's line.
pub fn sizing_text(r: &FleetReport, z: &Sizing) -> String {
    let head = format!(
        "sizing: N = {}, K = {}, T_r = {}: ceil({}/{}) × {} = {}",
        z.n,
        z.k,
        d(z.restart_to_healthy_ms),
        z.n,
        z.k,
        d(z.restart_to_healthy_ms),
        d(z.needed_ms)
    );
    let Some((lead, i)) = z.lead else {
        return format!(
            "{head}; no lead to compare with (nothing came due, or the data shows no \
             exhaustion and the judge projected none)"
        );
    };
    let whose = r
        .replicas
        .get(i)
        .map(|x| labels_text(&x.labels))
        .unwrap_or_default();
    let lead_d = lead_length(lead);
    let basis = match lead.to {
        LeadTo::Exhaustion(s) => format!("to {s} at its limit"),
        _ => "projected".into(),
    };
    let cmp = if z.fit == Fit::Fits { "<=" } else { ">" };
    let verdict = match z.fit {
        Fit::Fits => "fits".to_string(),
        Fit::TooSlow { k_needed } => format!(
            "too slow: raise K to >= {k_needed} (the smallest K with ceil({}/K) × {} <= {lead_d})",
            z.n,
            d(z.restart_to_healthy_ms)
        ),
        Fit::NoK => "too slow for any K: the lead is shorter than one T_r; give the judge more \
                     lead (exhaust_within) or make the restart cheaper"
            .to_string(),
        Fit::Unknown => String::new(),
    };
    format!("{head} {cmp} {lead_d}, the smallest lead the judge gave ({whose}, {basis}): {verdict}")
}

/// The fleet's worst moment, its longest drain, and the sizing line.
fn summary(r: &FleetReport) -> String {
    let mut out = format!(
        "fleet: at most {} restarting at once{}, at most {} of {} held\n",
        r.worst_concurrent,
        r.worst_at_ms
            .map(|t| format!(" (first at {})", rfc3339(t)))
            .unwrap_or_default(),
        r.most_slots_held,
        plural(r.setup.cfg.max_concurrent.max(1) as usize, "slot")
    );
    match r.drain() {
        Some(round) => {
            let _ = writeln!(
                out,
                "  drained in {}: from the first go ({}) to the last restart ({}), {} \
                 restarted; the longest of {}",
                d(round.drain_ms()),
                rfc3339(round.first_go_ms),
                rfc3339(round.last_restart_ms),
                plural(round.replicas, "replica"),
                plural(r.rounds.len(), "round")
            );
        }
        None => out.push_str("  nothing restarted\n"),
    }
    let _ = writeln!(out, "{}", sizing_text(r, &r.sizing()));
    out
}

/// The whole fleet section.
pub fn fleet_text(r: &FleetReport) -> String {
    let mut out = preamble(r);
    for replica in &r.replicas {
        out.push('\n');
        out.push_str(&replica_text(replica));
    }
    out.push('\n');
    out.push_str(&summary(r));
    out
}

fn unix_s(ms: u64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn lead_json(l: Option<Lead>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => json!({
            "ms": l.ms,
            "to": match l.to {
                LeadTo::Exhaustion(s) => format!("exhaustion:{s}"),
                LeadTo::Projected => "projected".into(),
                LeadTo::ProcessEnd => "process_end".into(),
            },
        }),
    }
}

fn episode_json(e: &Episode) -> Value {
    let exhausted = if e.exhausted_while_deferred() {
        json!("while_deferred")
    } else if e.exhausted_before_restart() {
        json!("before_restart")
    } else {
        Value::Null
    };
    json!({
        "due": unix_s(e.due_ms),
        "tte_at_due_s": e.tte_at_due_s,
        "deferred_ms": e.deferred_ms(),
        "outcome": e.outcome.as_str(),
        "waited_until": unix_s(e.waited_until_ms),
        "go": e.go.map(|g| unix_s(g.at_ms)),
        "go_reason": e.go.map(|g| g.reason.as_str()),
        "tte_at_go_s": e.go.and_then(|g| g.tte_s),
        "restarted": e.go.map(|g| unix_s(g.restart_ms)),
        "exhaustion": e.exhaustion.map(|(at, s)| json!({"at": unix_s(at), "series": s.as_str()})),
        "exhausted": exhausted,
        "lead_given": lead_json(e.lead_given()),
        "lead_kept": lead_json(e.lead_kept()),
    })
}

fn replica_json(r: &ReplicaReport) -> Value {
    let overrides: BTreeMap<&str, usize> = r
        .overrides()
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    json!({
        "labels": r.labels,
        "restarts": r.restarts(),
        "deferred_ms": r.deferred_ms(),
        "longest_wait_ms": r.longest_wait_ms(),
        "overrides": overrides,
        "exhausted_while_deferred": r.exhausted_while_deferred(),
        "episodes": r.episodes.iter().map(episode_json).collect::<Vec<_>>(),
    })
}

fn sizing_json(r: &FleetReport, z: &Sizing) -> Value {
    let (fits, k_needed) = match z.fit {
        Fit::Fits => (json!(true), Value::Null),
        Fit::TooSlow { k_needed } => (json!(false), json!(k_needed)),
        Fit::NoK => (json!(false), Value::Null),
        Fit::Unknown => (Value::Null, Value::Null),
    };
    json!({
        "n": z.n,
        "k": z.k,
        "waves": z.waves,
        "restart_to_healthy_ms": z.restart_to_healthy_ms,
        "needed_ms": z.needed_ms,
        "smallest_lead": lead_json(z.lead.map(|(l, _)| l)),
        "smallest_lead_labels": z.lead.and_then(|(_, i)| r.replicas.get(i)).map(|x| &x.labels),
        "fits": fits,
        "k_needed": k_needed,
        "line": sizing_text(r, z),
    })
}

/// The fleet section as JSON.
pub fn fleet_json(r: &FleetReport) -> Value {
    let s = &r.setup;
    let ms = super::ms;
    json!({
        "group": s.cfg.group,
        "n": r.replicas.len(),
        "k": s.cfg.max_concurrent.max(1),
        "tick_ms": ms(s.tick.min(super::MAX_TICK)),
        "restart_cost_ms": ms(s.restart_cost),
        "healthy_for_ms": ms(s.cfg.healthy_for),
        "restart_to_healthy_ms": ms(s.restart_to_healthy()),
        "ticks": r.ticks,
        "worst_concurrent": r.worst_concurrent,
        "worst_concurrent_at": r.worst_at_ms.map(unix_s),
        "most_slots_held": r.most_slots_held,
        "rounds": r.rounds.iter().map(|x| json!({
            "first_go": unix_s(x.first_go_ms),
            "last_restart": unix_s(x.last_restart_ms),
            "drain_ms": x.drain_ms(),
            "replicas": x.replicas,
        })).collect::<Vec<_>>(),
        "drain_ms": r.drain().map(|x| x.drain_ms()),
        "sizing": sizing_json(r, &r.sizing()),
        "replicas": r.replicas.iter().map(replica_json).collect::<Vec<_>>(),
    })
}
