//! Consumer groups across processes, kept in the file.
//!
//! Members of a (group, topic) register in `bus_members` with an expiry that their heartbeat
//! renews every third of the lease TTL. The target assignment is a deterministic range split
//! of the partitions over the live members ordered by (join time, id), so every member
//! computes the same one. A member owns a partition while it holds its row in `bus_leases`;
//! it takes a partition only when no lease exists, and gives one up (after the engine
//! committed, on `revoke_complete`) by deleting its lease. A dead process's rows expire after
//! the TTL and the survivors take its partitions from the committed offset. Any change other
//! members must react to bumps `bus_groups.generation`, which members poll cheaply.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onex_core::{Error, Result, StartFrom};
use rusqlite::{params, OptionalExtension, Transaction};

use super::codec::SqlContext;

/// Identifies one member of one (group, topic).
#[derive(Debug, Clone)]
pub(crate) struct MemberKey {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) topic_id: i64,
    pub(crate) member: String,
}

/// What a coordination round decided for one member.
#[derive(Debug)]
pub(crate) struct Coordination {
    /// Partitions this member should own.
    pub(crate) target: Vec<u32>,
    /// Partitions whose lease this member holds now (including `acquired`).
    pub(crate) held: Vec<u32>,
    /// Partitions leased in this round, with the offset to start reading at.
    pub(crate) acquired: Vec<(u32, u64)>,
    /// The group generation after this round.
    pub(crate) generation: i64,
}

/// Wall-clock milliseconds: leases are compared across processes on one machine.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn ttl_ms(ttl: Duration) -> i64 {
    ttl.as_millis() as i64
}

/// Tells every member of the group to look again.
pub(crate) fn bump(tx: &Transaction<'_>, key: &MemberKey) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO bus_groups(group_name, topic_id, generation) VALUES (?1, ?2, 1)
         ON CONFLICT(group_name, topic_id) DO UPDATE SET generation = generation + 1",
    )
    .and_then(|mut s| s.execute(params![key.group, key.topic_id]))
    .sql("bumping the group generation")?;
    Ok(())
}

/// Registers (or renews) the member; returns whether it was not registered before.
fn upsert_member(tx: &Transaction<'_>, key: &MemberKey, now: i64, ttl: Duration) -> Result<bool> {
    let renewed = tx
        .prepare_cached("UPDATE bus_members SET expires_at = ?4 WHERE group_name = ?1 AND topic_id = ?2 AND member_id = ?3")
        .and_then(|mut s| s.execute(params![key.group, key.topic_id, key.member, now + ttl_ms(ttl)]))
        .sql("renewing a group member")?;
    if renewed > 0 {
        return Ok(false);
    }
    tx.prepare_cached("INSERT INTO bus_members(group_name, topic_id, member_id, joined_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut s| s.execute(params![key.group, key.topic_id, key.member, now, now + ttl_ms(ttl)]))
        .sql("registering a group member")?;
    Ok(true)
}

/// Deletes expired members and leases of the group; returns how many rows went.
fn purge_expired(tx: &Transaction<'_>, key: &MemberKey, now: i64) -> Result<usize> {
    let members = tx
        .prepare_cached("DELETE FROM bus_members WHERE group_name = ?1 AND topic_id = ?2 AND expires_at < ?3")
        .and_then(|mut s| s.execute(params![key.group, key.topic_id, now]))
        .sql("expiring group members")?;
    let leases = tx
        .prepare_cached("DELETE FROM bus_leases WHERE group_name = ?1 AND topic_id = ?2 AND expires_at < ?3")
        .and_then(|mut s| s.execute(params![key.group, key.topic_id, now]))
        .sql("expiring partition leases")?;
    if members + leases > 0 {
        tracing::info!(group = %key.group, topic = %key.topic, members, leases, "expired group members/leases of a dead or stalled consumer");
    }
    Ok(members + leases)
}

/// Joins the group.
pub(crate) fn join(tx: &Transaction<'_>, key: &MemberKey, ttl: Duration) -> Result<()> {
    upsert_member(tx, key, now_ms(), ttl)?;
    bump(tx, key)
}

/// Renews the member and its leases and expires dead members; returns whether the group
/// changed (a purge, or this member had been expired and joined again).
pub(crate) fn heartbeat(tx: &Transaction<'_>, key: &MemberKey, ttl: Duration) -> Result<bool> {
    let now = now_ms();
    let rejoined = upsert_member(tx, key, now, ttl)?;
    renew_leases(tx, key, now, ttl)?;
    let purged = purge_expired(tx, key, now)?;
    let changed = rejoined || purged > 0;
    if changed {
        bump(tx, key)?;
    }
    Ok(changed)
}

fn renew_leases(tx: &Transaction<'_>, key: &MemberKey, now: i64, ttl: Duration) -> Result<()> {
    tx.prepare_cached("UPDATE bus_leases SET expires_at = ?4 WHERE group_name = ?1 AND topic_id = ?2 AND owner = ?3")
        .and_then(|mut s| s.execute(params![key.group, key.topic_id, key.member, now + ttl_ms(ttl)]))
        .sql("renewing partition leases")?;
    Ok(())
}

/// The range split: `partitions` over `members` (in order); the share of member `index`.
pub(crate) fn range_share(partitions: u32, members: usize, index: usize) -> Vec<u32> {
    if members == 0 {
        return Vec::new();
    }
    let (per, extra) = (partitions / members as u32, partitions % members as u32);
    let start = per * index as u32 + (index as u32).min(extra);
    let count = per + u32::from((index as u32) < extra);
    (start..start + count).collect()
}

/// One coordination round for `key`: renew, expire the dead, compute the target, lease
/// every target partition nobody holds.
pub(crate) fn coordinate(tx: &Transaction<'_>, key: &MemberKey, partitions: u32, ttl: Duration, start: StartFrom) -> Result<Coordination> {
    let now = now_ms();
    let rejoined = upsert_member(tx, key, now, ttl)?;
    if rejoined | (purge_expired(tx, key, now)? > 0) {
        bump(tx, key)?;
    }
    let members: Vec<String> = tx
        .prepare_cached("SELECT member_id FROM bus_members WHERE group_name = ?1 AND topic_id = ?2 ORDER BY joined_at, member_id")
        .and_then(|mut s| s.query_map(params![key.group, key.topic_id], |r| r.get(0))?.collect())
        .sql("listing group members")?;
    let index = members.iter().position(|m| *m == key.member).expect("registered above");
    let target = range_share(partitions, members.len(), index);
    let leases: Vec<(u32, String)> = tx
        .prepare_cached("SELECT part, owner FROM bus_leases WHERE group_name = ?1 AND topic_id = ?2")
        .and_then(|mut s| s.query_map(params![key.group, key.topic_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .sql("listing partition leases")?;
    let mut held: Vec<u32> = leases.iter().filter(|(_, o)| *o == key.member).map(|(p, _)| *p).collect();
    let mut acquired = Vec::new();
    for p in &target {
        if leases.iter().any(|(lp, _)| lp == p) {
            continue;
        }
        tx.prepare_cached("INSERT INTO bus_leases(group_name, topic_id, part, owner, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(params![key.group, key.topic_id, p, key.member, now + ttl_ms(ttl)]))
            .sql("leasing a partition")?;
        acquired.push((*p, start_offset(tx, key, *p, start)?));
        held.push(*p);
    }
    renew_leases(tx, key, now, ttl)?;
    held.sort_unstable();
    let generation = generation(tx, key)?.unwrap_or(0);
    Ok(Coordination { target, held, acquired, generation })
}

/// Where a newly leased partition starts: the group's committed offset, else per `start`.
fn start_offset(tx: &Transaction<'_>, key: &MemberKey, partition: u32, start: StartFrom) -> Result<u64> {
    let committed: Option<i64> = tx
        .prepare_cached("SELECT next_offset FROM bus_offsets WHERE group_name = ?1 AND topic_id = ?2 AND part = ?3")
        .and_then(|mut s| s.query_row(params![key.group, key.topic_id, partition], |r| r.get(0)).optional())
        .sql("reading a committed offset")?;
    Ok(match (committed, start) {
        (Some(c), _) => c as u64,
        // Reading from 0 starts at the oldest retained record.
        (None, StartFrom::Earliest) => 0,
        (None, StartFrom::Latest) => {
            let (pid, floor): (i64, i64) = tx
                .prepare_cached("SELECT id, next_offset FROM bus_partitions WHERE topic_id = ?1 AND part = ?2")
                .and_then(|mut s| s.query_row(params![key.topic_id, partition], |r| Ok((r.get(0)?, r.get(1)?))))
                .sql("reading the end of a partition")?;
            super::codec::end_offset(tx, pid, floor)?
        }
    })
}

/// The group's generation, if the group was ever joined.
pub(crate) fn generation(conn: &rusqlite::Connection, key: &MemberKey) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT generation FROM bus_groups WHERE group_name = ?1 AND topic_id = ?2")
        .and_then(|mut s| s.query_row(params![key.group, key.topic_id], |r| r.get(0)).optional())
        .sql("reading the group generation")
}

/// Commits offsets of partitions this member still leases; anything else is refused.
pub(crate) fn commit(tx: &Transaction<'_>, key: &MemberKey, offsets: &[(u32, u64)]) -> Result<()> {
    let now = now_ms();
    for (p, _) in offsets {
        let owner: Option<String> = tx
            .prepare_cached("SELECT owner FROM bus_leases WHERE group_name = ?1 AND topic_id = ?2 AND part = ?3")
            .and_then(|mut s| s.query_row(params![key.group, key.topic_id, p], |r| r.get(0)).optional())
            .sql("checking a partition lease")?;
        if owner.as_deref() != Some(key.member.as_str()) {
            return Err(Error::invalid_state(format!(
                "partition {p} of topic {:?} is no longer leased by this member of group {:?} (its lease expired or moved to another member); commit refused, the new owner resumes from the last committed offset",
                key.topic, key.group
            ))
            .with("topic", &key.topic)
            .with("partition", p));
        }
    }
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO bus_offsets(group_name, topic_id, part, next_offset, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(group_name, topic_id, part) DO UPDATE SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
        )
        .sql("preparing an offset commit")?;
    for (p, o) in offsets {
        upsert.execute(params![key.group, key.topic_id, p, *o as i64, now]).sql("committing an offset")?;
    }
    Ok(())
}

/// Gives up leases after a revocation was acknowledged.
pub(crate) fn release(tx: &Transaction<'_>, key: &MemberKey, partitions: &[u32]) -> Result<()> {
    let mut del = tx
        .prepare_cached("DELETE FROM bus_leases WHERE group_name = ?1 AND topic_id = ?2 AND part = ?3 AND owner = ?4")
        .sql("preparing a lease release")?;
    for p in partitions {
        del.execute(params![key.group, key.topic_id, p, key.member]).sql("releasing a partition lease")?;
    }
    bump(tx, key)
}

/// Leaves the group: the member and all its leases go.
pub(crate) fn leave(tx: &Transaction<'_>, key: &MemberKey) -> Result<()> {
    tx.prepare_cached("DELETE FROM bus_members WHERE group_name = ?1 AND topic_id = ?2 AND member_id = ?3")
        .and_then(|mut s| s.execute(params![key.group, key.topic_id, key.member]))
        .sql("leaving the group")?;
    tx.prepare_cached("DELETE FROM bus_leases WHERE group_name = ?1 AND topic_id = ?2 AND owner = ?3")
        .and_then(|mut s| s.execute(params![key.group, key.topic_id, key.member]))
        .sql("releasing leases")?;
    bump(tx, key)
}

#[cfg(test)]
mod tests {
    use super::range_share;

    #[test]
    fn range_split_covers_every_partition_once() {
        for partitions in 1..10u32 {
            for members in 1..6usize {
                let all: Vec<u32> = (0..members).flat_map(|i| range_share(partitions, members, i)).collect();
                assert_eq!(all, (0..partitions).collect::<Vec<_>>(), "{partitions} over {members}");
            }
        }
        assert_eq!(range_share(4, 2, 0), vec![0, 1]);
        assert_eq!(range_share(4, 2, 1), vec![2, 3]);
        assert_eq!(range_share(4, 0, 0), Vec::<u32>::new());
    }
}
