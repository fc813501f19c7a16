//! What the tests share, compiled only for the crate's unit tests and with the
//! `test-support` feature (which the integration tests turn on through the crate's
//! dev-dependency on itself); `cargo build --release` leaves it out of the binary.
//!
//! - [`FakeProc`]: a fixture /proc tree from real kernel text;
//! - [`metrics`]: the example snapshot behind the golden file, reading samples back from
//!   the text format, `promtool check metrics`;
//! - [`http`]: leakwatch's HTTP/1.1 client, whose raw `exchange` the tests speak with.

pub mod fake_proc;
pub mod metrics;

pub use crate::client as http;
pub use fake_proc::{FakePid, FakeProc};
