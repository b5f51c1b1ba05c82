//! The shapes of a partition that is not a split into disjoint groups:
//! which pairs of members lose their link. Jepsen calls these grudges.
//! Pure functions of the members' order (the nemesis shuffles it), so the
//! shapes can be tested without a cluster.
//!
//! A pair is cut both ways: with proxies the links are TCP connections,
//! and a TCP connection that carries only one direction does not carry
//! any (no acknowledgements), so one-way grudges cannot be expressed
//! there. In network namespaces a cut drops packets, and [`oneway`] drops
//! them in one direction only (`Drops`, ordered pairs).

/// Pairs of member indexes, each `(low, high)`, in order.
pub type Cuts = Vec<(usize, usize)>;

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// Two halves that share one member, the bridge, which sees both; no other
/// member sees across. `order` `[a b c d e]` gives `[a b c]` and `[c d e]`,
/// `c` the bridge. With 3 members the halves are one member each beside
/// the bridge: only the link between the two ends is cut, and every member
/// still sees a majority (itself and the bridge).
pub fn bridge(order: &[usize]) -> Cuts {
    let mid = order.len() / 2;
    let (left, right) = (&order[..mid], order.get(mid + 1..).unwrap_or(&[]));
    let mut cuts: Cuts = left.iter().flat_map(|a| right.iter().map(move |b| pair(*a, *b))).collect();
    cuts.sort_unstable();
    cuts
}

/// A ring in `order`: each member sees only its two neighbours. With 5
/// members each sees a majority (itself and two), but no two see the same
/// one; with 4, the diagonals are cut. With 3 or fewer every member is
/// every other's neighbour: nothing is cut, it is no fault at all.
pub fn ring(order: &[usize]) -> Cuts {
    let n = order.len();
    let mut cuts = Cuts::new();
    for x in 0..n {
        for y in x + 1..n {
            let apart = y - x;
            if apart != 1 && apart != n - 1 {
                cuts.push(pair(order[x], order[y]));
            }
        }
    }
    cuts.sort_unstable();
    cuts
}

/// Ordered pairs `(from, to)`: packets from member `from` to member `to`
/// are dropped; `(to, from)` is another link.
pub type Drops = Vec<(usize, usize)>;

/// Every packet from a member of `from` to a member of `to` dropped; the
/// other way they pass.
pub fn oneway(from: &[usize], to: &[usize]) -> Drops {
    let mut drops: Drops = from.iter().flat_map(|a| to.iter().filter(move |b| *b != a).map(move |b| (*a, *b))).collect();
    drops.sort_unstable();
    drops.dedup();
    drops
}

/// `2 -> 1 3`: who no longer hears whom, members numbered from 1.
pub fn describe_oneway(from: &[usize], to: &[usize]) -> String {
    let show = |g: &[usize]| {
        let mut g = g.to_vec();
        g.sort_unstable();
        g.iter().map(|m| (m + 1).to_string()).collect::<Vec<_>>().join(" ")
    };
    format!("{} -> {} dropped ({} -> {} pass)", show(from), show(to), show(to), show(from))
}

/// `1-3 2-4`: the cut pairs, members numbered from 1 as in zoo.cfg.
pub fn describe(cuts: &[(usize, usize)]) -> String {
    if cuts.is_empty() {
        return "nothing cut".into();
    }
    cuts.iter().map(|(a, b)| format!("{}-{}", a + 1, b + 1)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whom each member still sees, itself included.
    fn sees(n: usize, cuts: &[(usize, usize)]) -> Vec<Vec<usize>> {
        (0..n).map(|a| (0..n).filter(|b| !cuts.contains(&pair(a, *b))).collect()).collect()
    }

    #[test]
    fn a_bridge_sees_both_halves_and_nobody_else_crosses() {
        let cuts = bridge(&[4, 0, 2, 1, 3]);
        // Halves {4 0 2} and {2 1 3}, 2 the bridge.
        assert_eq!(cuts, vec![(0, 1), (0, 3), (1, 4), (3, 4)]);
        let s = sees(5, &cuts);
        assert_eq!(s[2], vec![0, 1, 2, 3, 4]);
        assert_eq!(s[0], vec![0, 2, 4]);
        assert_eq!(s[1], vec![1, 2, 3]);
        assert_eq!(describe(&cuts), "1-2 1-4 2-5 4-5");
        // Three members: the two ends lose each other, nothing else.
        assert_eq!(bridge(&[2, 0, 1]), vec![(1, 2)]);
    }

    #[test]
    fn a_oneway_cut_drops_one_direction() {
        let drops = oneway(&[2], &[0, 1]);
        assert_eq!(drops, vec![(2, 0), (2, 1)]);
        // Nothing the other way, and never a member to itself.
        assert!(!drops.contains(&(0, 2)) && !drops.contains(&(1, 2)));
        assert_eq!(oneway(&[0, 1], &[1, 2]), vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(describe_oneway(&[2], &[1, 0]), "3 -> 1 2 dropped (1 2 -> 3 pass)");
    }

    #[test]
    fn a_ring_leaves_each_member_its_neighbours() {
        let cuts = ring(&[0, 1, 2, 3, 4]);
        assert_eq!(cuts, vec![(0, 2), (0, 3), (1, 3), (1, 4), (2, 4)]);
        let s = sees(5, &cuts);
        assert_eq!(s[0], vec![0, 1, 4]);
        // Every member sees a majority, and no two the same one.
        assert!(s.iter().all(|v| v.len() == 3));
        assert_eq!(s.iter().collect::<std::collections::BTreeSet<_>>().len(), 5);
        assert_eq!(ring(&[3, 1, 0, 2]), vec![(0, 3), (1, 2)]);
        // Three members are all neighbours: it degenerates to no fault.
        assert!(ring(&[1, 0, 2]).is_empty());
        assert_eq!(describe(&[]), "nothing cut");
    }
}
