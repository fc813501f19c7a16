//! Targets (stub).
