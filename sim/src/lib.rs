//! A deterministic simulation of Corral's ensemble: the real replica driver
//! and core (the code the `corral` binary runs) for N members in one
//! thread, with a virtual clock, a network of ordered links that can be cut,
//! disks that lose what was not synced when their member crashes, and
//! simulated clients that connect to any member. Every choice comes from one
//! seed, so a failing run replays exactly.
//!
//! A run has a safety phase (faults: crashes, restarts, partitions, pauses)
//! and then a liveness phase (everything healed: a leader must be elected,
//! every client must complete a write, every member must converge). The
//! checks ([`check`]) run on every step and at the end; at the end, too, the
//! clients' register ops ([`history`]) go through the linearizability
//! checker the Jepsen harness uses (`corral-check`).

pub mod check;
pub mod client;
pub mod history;
pub mod script;
mod world;

pub use script::run_script;
pub use world::{Bug, Report, SimConfig, Violation};

/// Runs one seed. A panic in the code under test (an assertion of the
/// replica or the core) is a violation of that seed, with its trace.
pub fn run(seed: u64, cfg: &SimConfig) -> Report {
    let mut world = world::World::new(seed, cfg.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()));
    match result {
        Ok(()) => world.report(),
        Err(panic) => {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            world.panicked(msg)
        }
    }
}
