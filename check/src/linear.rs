//! Linearizability of one key's ops: the Wing–Gong search as Lowe improved
//! it and Porcupine implements it. Calls and returns sit in one list in time
//! order; the search walks it, linearizing any call it meets whose effect the
//! model allows (lifting its call and return out of the list), and
//! backtracks when it meets a return, whose op should have been linearized
//! by then. A cache of (set of linearized ops, model state) prunes every
//! configuration already explored: without it the search is exponential in
//! the concurrency, with it polynomial in practice.
//!
//! The set is hashed Zobrist-style (each op a random 128-bit word, a set the
//! XOR of its members), so a step updates it in O(1) and the cache holds 24
//! bytes per configuration even for 100k-op histories. Two different sets
//! collide with probability about n²/2¹²⁸: never, for any history we record.

use super::history::Op;
use super::model::{self, State};
use std::collections::HashSet;

/// Why a key's ops do not linearize.
#[derive(Debug, Clone)]
pub struct Stuck {
    /// Index (into the ops given) of the op that could not be linearized:
    /// in the deepest partial linearization found, its return came before
    /// any order of the pending ops let it take effect.
    pub op: usize,
    /// The last ops of that partial linearization, oldest first.
    pub prefix: Vec<usize>,
    /// Model states that partial linearization could end in (a few).
    pub states: Vec<State>,
    /// How many ops it linearized.
    pub depth: usize,
}

const NIL: usize = usize::MAX;

/// splitmix64: the checker's hashing and the history generator's randomness.
pub(crate) fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Checks ops of one key (all included ones: see `model::included`).
/// Ops whose result never came must have `complete_ns: None`.
pub fn check(ops: &[&Op]) -> Result<(), Stuck> {
    check_within(ops, usize::MAX).map_err(|e| e.expect("an unbounded search decides"))
}

/// `check`, giving up (`Err(None)`) once it has explored more than
/// `max_configurations` configurations. Many ops whose result never came
/// make a history that does not linearize costly to refute: each may be
/// placed anywhere after its call or nowhere, and the search must try
/// them all before it can say no. A caller that checks many histories on
/// a clock (the simulator) bounds that.
pub fn check_within(ops: &[&Op], max_configurations: usize) -> Result<(), Option<Stuck>> {
    let n = ops.len();
    // Entries 0..n are calls, n..2n returns; the list head is a sentinel 2n.
    let head = 2 * n;
    let time = |e: usize| -> (u64, u8) {
        if e < n {
            (ops[e].invoke_ns, 0)
        } else {
            // Calls sort before returns at the same instant: the two ops are
            // then taken as concurrent, the permissive reading.
            (ops[e - n].complete_ns.unwrap_or(u64::MAX), 1)
        }
    };
    let mut order: Vec<usize> = (0..2 * n).collect();
    order.sort_by_key(|&e| time(e));
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut last = head;
    for &e in &order {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for e in [call, call + n] {
            let (p, x) = (prev[e], next[e]);
            next[p] = x;
            if x != NIL {
                prev[x] = p;
            }
        }
    };
    // Undone in the reverse order of `lift`, so each entry finds its
    // neighbours as they were when it left.
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for e in [call + n, call] {
            let (p, x) = (prev[e], next[e]);
            next[p] = e;
            if x != NIL {
                prev[x] = e;
            }
        }
    };

    let mut seed = 0x5eed_u64;
    let zobrist: Vec<u128> = (0..n).map(|_| ((splitmix(&mut seed) as u128) << 64) | splitmix(&mut seed) as u128).collect();
    let mut required = ops.iter().filter(|o| !model::optional(o)).count();
    let mut set: u128 = 0;
    let mut state: State = None;
    let mut cache: HashSet<(u128, State)> = HashSet::new();
    // (call entry, state before it, which successor state was taken, forced)
    let mut stack: Vec<(usize, State, usize, bool)> = Vec::new();
    let mut best: Option<Stuck> = None;

    enum Next {
        /// A new configuration: take the forced ops, then scan from the head.
        Fresh,
        /// Scan on from this entry.
        Scan(usize),
        /// Try this call's successors from this choice on.
        Resume(usize, usize),
        /// The configuration cannot be extended: undo the last step.
        Backtrack,
    }
    let mut next_step = Next::Fresh;
    loop {
        if required == 0 {
            return Ok(()); // what is left may all never have happened
        }
        if cache.len() > max_configurations {
            return Err(None);
        }
        match next_step {
            Next::Fresh => {
                // An op that leaves the register as it is (an ok read, a
                // failed CAS) and fits the current value can be linearized
                // at once without loss: any linearization placing it later
                // stays one with it moved here (nothing it must follow is
                // pending, since it is callable, and the value it sees is
                // the same). So it is taken without branching, and if the
                // search fails after it, it fails here too. This saves the
                // search from trying every subset of concurrent reads.
                next_step = Next::Scan(next[head]);
                let mut e = next[head];
                while e != NIL && e < n {
                    if model::preserves(ops[e]) && model::step(ops[e], state).next().is_some() {
                        let key = (set ^ zobrist[e], state);
                        if !cache.insert(key) {
                            next_step = Next::Backtrack; // explored from here before, in vain
                        } else {
                            stack.push((e, state, 0, true));
                            set = key.0;
                            required -= 1;
                            lift(&mut next, &mut prev, e);
                            next_step = Next::Fresh;
                        }
                        break;
                    }
                    e = next[e];
                }
            }
            Next::Scan(e) | Next::Resume(e, _) if e != NIL && e < n => {
                let from = if let Next::Resume(_, f) = next_step { f } else { 0 };
                next_step = Next::Scan(next[e]);
                for (choice, s) in model::step(ops[e], state).enumerate().skip(from) {
                    let key = (set ^ zobrist[e], s);
                    if cache.insert(key) {
                        stack.push((e, state, choice, false));
                        state = s;
                        set = key.0;
                        if !model::optional(ops[e]) {
                            required -= 1;
                        }
                        lift(&mut next, &mut prev, e);
                        next_step = Next::Fresh;
                        break;
                    }
                }
            }
            Next::Scan(e) | Next::Resume(e, _) => {
                if e == NIL {
                    // Unreachable while a required op is unlinearized (its
                    // return is still in the list); kept as a backstop.
                    break;
                }
                // A return: its op should be linearized by now. Note the
                // deepest such dead end for the report, then backtrack.
                let depth = stack.len();
                match &mut best {
                    Some(b) if b.depth > depth => {}
                    Some(b) if b.depth == depth && b.op == e - n => {
                        if b.states.len() < 4 && !b.states.contains(&state) {
                            b.states.push(state);
                        }
                    }
                    _ => {
                        let prefix = stack.iter().rev().take(8).rev().map(|(c, _, _, _)| *c).collect();
                        best = Some(Stuck { op: e - n, prefix, states: vec![state], depth });
                    }
                }
                next_step = Next::Backtrack;
            }
            Next::Backtrack => {
                let Some((c, before, choice, forced)) = stack.pop() else { break };
                unlift(&mut next, &mut prev, c);
                if !model::optional(ops[c]) {
                    required += 1;
                }
                set ^= zobrist[c];
                state = before;
                // Undoing a forced op: the configuration before it fails too.
                next_step = if forced { Next::Backtrack } else { Next::Resume(c, choice + 1) };
            }
        }
    }
    Err(Some(best.unwrap_or(Stuck { op: 0, prefix: vec![], states: vec![None], depth: 0 })))
}
