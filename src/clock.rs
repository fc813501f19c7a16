//! The two clocks, in milliseconds: the wall clock for what people read (`taken_at_unix_ms`,
//! bundle names) and `CLOCK_MONOTONIC` for every duration, slope and deadline. Only the
//! edges read them (the tick, HTTP, the actions); the judge takes times from its inputs.

/// The wall clock, milliseconds since the Unix epoch (0 before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC in milliseconds.
pub fn mono_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            let ms = i128::from(t.tv_sec()) * 1000 + i128::from(t.tv_nsec()) / 1_000_000;
            u64::try_from(ms).unwrap_or(0)
        })
        .unwrap_or(0)
}
