//! `/metrics` rendered once per snapshot ([`crate::http::rendered`]): a flood of scrapes
//! renders each snapshot once (again only after [`PROCESS_MAX_AGE`], for the `process_*`
//! figures), and a new snapshot is rendered at once.

use std::collections::HashSet;
use std::time::Instant;

use super::*;
use crate::http::app_rendering;
use crate::http::rendered::{Rendered, PROCESS_MAX_AGE};

fn ticks(n: u64) -> Arc<Snapshot> {
    let mut snap = snapshot(vec![healthy("app")]);
    snap.ticks_total = n;
    Arc::new(snap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_scrapes_renders_each_snapshot_once() {
    let (tx, snapshot) = watch::channel(ticks(1));
    let (_token_tx, token) = watch::channel(None);
    let rendered = Arc::new(Rendered::default());
    let router = app_rendering(AppState { snapshot, token }, Arc::clone(&rendered));
    let started = Instant::now();
    let scrapes: Vec<_> = (0..300)
        .map(|_| tokio::spawn(router.clone().oneshot(req("GET", "/metrics"))))
        .collect();
    let mut bodies = HashSet::new();
    for scrape in scrapes {
        let res = scrape.await.expect("task").expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        bodies.insert(res.into_body().collect().await.expect("body").to_bytes());
    }
    // Pace-independent: one render, and one more per PROCESS_MAX_AGE the scrapes took.
    let bound = 1 + started.elapsed().as_millis() / PROCESS_MAX_AGE.as_millis();
    let renders = rendered.renders();
    assert!(
        (1..=bound as u64).contains(&renders),
        "{renders} renders of one snapshot for 300 scrapes (bound {bound})"
    );
    assert!(bodies.len() as u64 <= renders, "{} bodies", bodies.len());

    tx.send_replace(ticks(2));
    let res = router.clone().oneshot(req("GET", "/metrics")).await;
    let body = res.expect("infallible").into_body().collect().await;
    let text = String::from_utf8(body.expect("body").to_bytes().to_vec()).expect("utf-8");
    assert!(text.contains("\nleakwatch_ticks_total 2\n"), "{text}");
    assert_eq!(
        rendered.renders(),
        renders + 1,
        "a new snapshot renders at once"
    );
}

#[test]
fn the_body_is_rendered_again_for_a_new_snapshot_or_after_the_max_age() {
    let r = Rendered::default();
    let t0 = Instant::now();
    let first = ticks(1);
    let a = r.body_at(&first, t0);
    assert_eq!(r.renders(), 1);
    let b = r.body_at(&first, t0 + PROCESS_MAX_AGE / 2);
    assert_eq!(
        (r.renders(), &b),
        (1, &a),
        "the same snapshot, young: the same bytes"
    );
    // Equal content, another publication: rendered (identity, not content, names it).
    let again = ticks(1);
    r.body_at(&again, t0 + PROCESS_MAX_AGE / 2);
    assert_eq!(r.renders(), 2);
    let next = ticks(5);
    let c = r.body_at(&next, t0 + PROCESS_MAX_AGE / 2);
    assert_eq!(r.renders(), 3);
    assert!(String::from_utf8_lossy(&c).contains("\nleakwatch_ticks_total 5\n"));
    // A stalled tick: the same snapshot, but process_* are read again once a second.
    r.body_at(&next, t0 + PROCESS_MAX_AGE * 2);
    assert_eq!(r.renders(), 4);
    r.body_at(&next, t0 + PROCESS_MAX_AGE * 2);
    assert_eq!(r.renders(), 4);
}
