//! Test-only faults, to prove that the simulator and the Jepsen harness
//! catch what they claim to catch. They exist in every build but can be
//! turned on only by an explicitly named test-only switch (`corral server
//! --unsafe-test-bug B`, or the simulator's `--bug B`), never from zoo.cfg
//! or a client, and a server with one on says so loudly in its log.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TestBug {
    /// The shell reports writes durable before the disk has them.
    LostAck,
    /// Reads are answered at once, ahead of the session's pending writes.
    StaleRead,
    /// Prep ignores the changes of proposals in flight.
    OverlaySkip,
    /// Followers expire sessions on their own clock, outside the log.
    ExpireOnFollower,
    /// A leader that lost its quorum keeps leading (no check-quorum step
    /// down) and answers linearizable reads locally, as if it held a lease.
    SplitBrain,
    /// A leader answers a create as soon as it has proposed it, not once a
    /// quorum has committed it: everything in a create's reply (the final
    /// path, the new node's stat) is known from the prepped txn, so the
    /// reply "need not wait". It must: a leader that is cut off or killed
    /// before its followers have the entry loses it at the next election,
    /// and the client was told the node exists. Only a create whose session
    /// has nothing else in flight is answered early (so replies stay in
    /// session order and the bug is exactly an acknowledgement before
    /// commit). The set workload's final read then misses acknowledged
    /// adds; a lost sequential create's suffix is handed out again.
    EarlyAck,
}

impl TestBug {
    pub const ALL: &'static [TestBug] = &[TestBug::LostAck, TestBug::StaleRead, TestBug::OverlaySkip, TestBug::ExpireOnFollower, TestBug::SplitBrain, TestBug::EarlyAck];

    pub fn name(self) -> &'static str {
        match self {
            TestBug::LostAck => "lost-ack",
            TestBug::StaleRead => "stale-read",
            TestBug::OverlaySkip => "overlay-skip",
            TestBug::ExpireOnFollower => "expire-on-follower",
            TestBug::SplitBrain => "split-brain",
            TestBug::EarlyAck => "early-ack",
        }
    }
}

impl FromStr for TestBug {
    type Err = String;
    fn from_str(s: &str) -> Result<TestBug, String> {
        TestBug::ALL.iter().copied().find(|b| b.name() == s).ok_or_else(|| {
            let known: Vec<&str> = TestBug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown test bug {s:?} (known: {})", known.join(", "))
        })
    }
}

impl std::fmt::Display for TestBug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in TestBug::ALL {
            assert_eq!(b.name().parse::<TestBug>(), Ok(*b));
        }
        assert!("nonsense".parse::<TestBug>().is_err());
    }
}
