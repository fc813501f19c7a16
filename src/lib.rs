//! leakwatch: watch one process from the outside for the leaks that kill services (file
//! descriptors, CLOSE_WAIT sockets, heap and cgroup memory, stuck worker threads) and say so
//! before the limit is hit.
//!
//! Data flow: [`target`] resolves a selector to a (pid, starttime); [`collect`] reads /proc
//! and cgroupfs into one [`sample::Sample`]; the CLI ([`cli`]) shows it.

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
