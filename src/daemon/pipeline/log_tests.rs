//! What the tick logs when the verdict flips, on a real child (`sleep`): the signal action
//! needs a real process to signal (SIGCONT, which a sleeping process ignores).

use std::io::Write;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::actions::{SignalConfig, SignalName};
use crate::config::ActionsConfig;
use crate::judge::{Rule, Series};

/// The log lines written while `f` runs on this thread.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || out.clone())
        .with_ansi(false)
        .finish();
    // Each log callsite caches whether any subscriber wants it. A test on another thread
    // that reaches a callsite first, with no subscriber of its own, may cache "never"
    // while ours is being installed, and our lines are dropped. Rebuild the caches once
    // ours is in place.
    let r = tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f()
    });
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (r, text)
}

/// A pipeline of `child` on the real /proc: more than one fd fails at once, and the flip
/// sends SIGCONT with `grace`.
fn pipeline(child: &Child, grace: Duration) -> Pipeline {
    let mut target = TargetConfig::from_selector(Selector::Pid(child.id() as i32));
    target.rules = vec![(
        Series::Fds,
        Rule {
            max: Some(1.0),
            ..Rule::default()
        },
    )];
    target.judge.fail_after = 1;
    target.actions = ActionsConfig {
        signal: Some(SignalConfig {
            signal: SignalName {
                number: libc::SIGCONT,
            },
            grace,
        }),
        ..ActionsConfig::default()
    };
    Pipeline::new(Config {
        targets: vec![target],
        ..Config::default()
    })
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("120")
        .spawn()
        .expect("spawn sleep")
}

/// The tick logged "/healthz now answers 503" before the actions held the verdict at
/// 200 for the signal's grace: the log said 503 while /healthz answered 200.
#[test]
fn during_signal_grace_the_log_does_not_claim_503() {
    let mut child = sleeper();
    let mut w = pipeline(&child, Duration::from_secs(3600));
    let (status, log) = logged(|| w.tick().remove(0));
    assert!(status.found, "{:?}", status.missing_reason);
    assert!(status.verdict().healthy, "held: {:?}", status.verdict());
    assert!(!log.contains("now answers 503"), "{log}");
    assert!(
        log.contains("unhealthy: signal_grace holds /healthz at 200"),
        "{log}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn without_a_grace_or_once_it_is_over_the_log_says_503() {
    let mut child = sleeper();
    let mut w = pipeline(&child, Duration::ZERO);
    let (status, log) = logged(|| w.tick().remove(0));
    assert!(!status.verdict().healthy);
    assert!(log.contains("unhealthy: /healthz now answers 503"), "{log}");

    // A grace that is over by the next tick: the 503 is logged when it begins.
    let mut w = pipeline(&child, Duration::from_millis(50));
    let (status, log) = logged(|| w.tick().remove(0));
    assert!(status.verdict().healthy);
    assert!(!log.contains("now answers 503"), "{log}");
    std::thread::sleep(Duration::from_millis(200));
    let (status, log) = logged(|| w.tick().remove(0));
    assert!(!status.verdict().healthy);
    assert!(log.contains("unhealthy: /healthz now answers 503"), "{log}");
    let _ = child.kill();
    let _ = child.wait();
}
