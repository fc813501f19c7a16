//! leakwatch: watch one process from the outside for the leaks that kill services (file
//! descriptors, CLOSE_WAIT sockets, heap and cgroup memory, stuck worker threads) and say so
//! before the limit is hit.
//!
//! Every tick, per target ([`daemon::pipeline`]): [`target`] resolves a selector to a
//! (pid, start time); [`collect`] reads /proc, cgroupfs and sock_diag into one
//! [`sample::Sample`]; [`judge`] (pure) turns it into a verdict with its windows, trends
//! and rules; the flip fires the [`actions`]; the result is published as a
//! [`snapshot::Snapshot`] that [`http`] and [`metrics`] answer from. `check` runs the same
//! tick once; `inspect` only resolves and collects, and [`report`] prints the sample;
//! [`backtest`] replays history through the same judge. ARCHITECTURE.md has the map.

pub mod actions;
pub mod backtest;
pub mod cli;
// The one HTTP client (`backtest`, `demo`, `inspect --from`); public only for the tests
// (`test_support::http`), not an API.
#[cfg(any(test, feature = "test-support"))]
pub mod client;
#[cfg(not(any(test, feature = "test-support")))]
pub(crate) mod client;
pub mod clock;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod demo_child;
pub mod error;
pub mod fleet;
pub mod http;
pub mod judge;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod sample;
pub mod snapshot;
pub mod target;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod units;
