//! In-process consumer group coordination: members of one group split a topic's partitions;
//! a partition moves only after its previous owner acknowledged the revocation.

use std::collections::{BTreeMap, HashMap};

/// A member id within a group.
pub(crate) type MemberId = u64;

/// Partition ownership of one (group, topic).
#[derive(Debug, Default)]
pub(crate) struct GroupState {
    /// Members in join order.
    members: Vec<MemberId>,
    /// Who holds each partition now.
    owner: HashMap<u32, MemberId>,
    /// Who should hold it.
    target: HashMap<u32, MemberId>,
    /// Committed next offsets.
    pub(crate) committed: BTreeMap<u32, u64>,
}

/// What a member must be told on its next poll.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Revoke(Vec<u32>),
    Assign(Vec<u32>),
    None,
}

impl GroupState {
    pub(crate) fn join(&mut self, member: MemberId, partitions: u32) {
        self.members.push(member);
        self.rebalance(partitions);
    }

    pub(crate) fn leave(&mut self, member: MemberId, partitions: u32) {
        self.members.retain(|m| *m != member);
        self.owner.retain(|_, m| *m != member);
        self.rebalance(partitions);
    }

    /// Range assignment over members in join order.
    fn rebalance(&mut self, partitions: u32) {
        self.target.clear();
        let n = self.members.len() as u32;
        if n == 0 {
            return;
        }
        let per = partitions / n;
        let extra = partitions % n;
        let mut p = 0;
        for (i, m) in self.members.iter().enumerate() {
            let count = per + u32::from((i as u32) < extra);
            for _ in 0..count {
                self.target.insert(p, *m);
                p += 1;
            }
        }
    }

    /// The next change `member` must act on: first revocations, then assignments of
    /// partitions that nobody holds any more.
    pub(crate) fn next_change(&mut self, member: MemberId) -> Change {
        let mut revoke: Vec<u32> =
            self.owner.iter().filter(|(p, m)| **m == member && self.target.get(p) != Some(&member)).map(|(p, _)| *p).collect();
        if !revoke.is_empty() {
            revoke.sort_unstable();
            return Change::Revoke(revoke);
        }
        let mut assign: Vec<u32> =
            self.target.iter().filter(|(p, m)| **m == member && !self.owner.contains_key(p)).map(|(p, _)| *p).collect();
        if !assign.is_empty() {
            assign.sort_unstable();
            for p in &assign {
                self.owner.insert(*p, member);
            }
            return Change::Assign(assign);
        }
        Change::None
    }

    pub(crate) fn release(&mut self, member: MemberId, partitions: &[u32]) {
        for p in partitions {
            if self.owner.get(p) == Some(&member) {
                self.owner.remove(p);
            }
        }
    }

    pub(crate) fn owns(&self, member: MemberId, partition: u32) -> bool {
        self.owner.get(&partition) == Some(&member)
    }

    /// Partitions currently held by `member` whose target is still `member`.
    #[cfg(test)]
    pub(crate) fn stable_partitions(&self, member: MemberId) -> Vec<u32> {
        let mut v: Vec<u32> =
            self.owner.iter().filter(|(p, m)| **m == member && self.target.get(p) == Some(&member)).map(|(p, _)| *p).collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_move_only_after_release() {
        let mut g = GroupState::default();
        g.join(1, 4);
        assert_eq!(g.next_change(1), Change::Assign(vec![0, 1, 2, 3]));
        g.join(2, 4);
        assert_eq!(g.next_change(2), Change::None, "2 waits until 1 releases");
        assert_eq!(g.next_change(1), Change::Revoke(vec![2, 3]));
        g.release(1, &[2, 3]);
        assert_eq!(g.next_change(2), Change::Assign(vec![2, 3]));
        assert_eq!(g.stable_partitions(1), vec![0, 1]);
        g.leave(1, 4);
        assert_eq!(g.next_change(2), Change::Assign(vec![0, 1]));
    }
}
