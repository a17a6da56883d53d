//! What the benchmark binaries (`src/bin/bench-*.rs`) share: the release binary they
//! measure and how they summarise a series of wall times.

use std::path::PathBuf;
use std::time::Duration;

/// The binary under test: `SHIPSHAPE_BIN`, else `<target>/release/shipshape`; panics
/// saying what to build when it is missing.
pub fn release_binary() -> PathBuf {
    let p = match std::env::var_os("SHIPSHAPE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::target_dir().join("release/shipshape"),
    };
    assert!(
        p.exists(),
        "{} not found — run `cargo build --release -p shipshape` first",
        p.display()
    );
    p
}

/// The median of `xs` (the upper one of an even count).
pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
