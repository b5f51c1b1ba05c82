//! Large linearizable histories for measuring the checker: a sequential
//! execution of register ops on a few keys, each op's interval spread
//! around its linearization point so that about `concurrency` ops overlap
//! at any time, a few of them indeterminate.

use super::history::{Kind, Op, Outcome};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        super::linear::splitmix(&mut self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn linearizable_history(ops: usize, keys: usize, concurrency: u64, seed: u64) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut regs = vec![None; keys];
    let mut out = Vec::with_capacity(ops);
    for i in 0..ops {
        let t = 1_000 + 10 * i as u64 * keys as u64;
        let k = rng.below(keys as u64) as usize;
        let spread = 10 * concurrency * keys as u64;
        let (from, to) = (t - rng.below(spread.min(1_000)), t + rng.below(spread));
        let cur = regs[k];
        let v = Some(i as i64 + 1);
        let mut op = Op::new(i as u64 % (concurrency * 2), &format!("r{k}"), Kind::Read, cur, None, from, Some(to), Outcome::Ok);
        op.index = i;
        match rng.below(4) {
            0 | 1 => {}
            2 => {
                op.f = Kind::Write;
                op.value = v;
                regs[k] = v;
            }
            _ => {
                op.f = Kind::Cas;
                op.value = v;
                op.expected = if rng.below(2) == 0 { cur } else { Some(-1) };
                if op.expected == cur {
                    regs[k] = v;
                } else {
                    op.outcome = Outcome::Fail;
                }
            }
        }
        if op.f != Kind::Read && op.outcome == Outcome::Ok && rng.below(100) == 0 {
            op.outcome = Outcome::Info;
            op.complete_ns = None;
        }
        out.push(op);
    }
    out
}
