//! What the tests share, compiled only for the crate's unit tests and with the
//! `test-support` feature (which the integration tests turn on through the crate's
//! dev-dependency on itself); `cargo build --release` leaves it out of the binary.
//!
//! - [`FakeProc`]: a fixture /proc tree from real kernel text.

pub mod fake_proc;

pub use fake_proc::{FakePid, FakeProc};
