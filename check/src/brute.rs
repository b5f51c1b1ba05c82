//! A checker that tries every order: the reference the search is tested
//! against, on histories of a handful of ops. It treats all keys at once
//! (one map of registers), so agreement also tests that checking each key
//! alone (P-compositionality) loses nothing.

use super::history::Op;
use super::model::{self, Options, State};
use std::collections::BTreeMap;

/// Whether some order of the included ops (each optional op placed or left
/// out) respects real time (an op that returned before another was invoked
/// comes first) and the model.
pub fn linearizable(history: &[Op], opts: Options) -> bool {
    let ops: Vec<&Op> = history.iter().filter(|o| model::included(o, opts)).collect();
    assert!(ops.len() <= 10, "brute force is for small histories");
    let mut used = vec![false; ops.len()];
    search(&ops, &mut used, &mut BTreeMap::new())
}

fn search(ops: &[&Op], used: &mut Vec<bool>, regs: &mut BTreeMap<String, State>) -> bool {
    if (0..ops.len()).all(|i| used[i] || model::optional(ops[i])) {
        return true;
    }
    for i in 0..ops.len() {
        if used[i] {
            continue;
        }
        // Every op that returned strictly before this one was invoked must
        // already be placed (or, if optional, dropped: an optional op never
        // returns, so it never precedes anything).
        let blocked = (0..ops.len()).any(|j| !used[j] && j != i && ops[j].complete_ns.is_some_and(|c| c < ops[i].invoke_ns));
        if blocked {
            continue;
        }
        let before = regs.get(&ops[i].key).copied().flatten();
        used[i] = true;
        for s in model::step(ops[i], before).collect::<Vec<_>>() {
            regs.insert(ops[i].key.clone(), s);
            if search(ops, used, regs) {
                return true;
            }
        }
        regs.insert(ops[i].key.clone(), before);
        used[i] = false;
    }
    false
}
