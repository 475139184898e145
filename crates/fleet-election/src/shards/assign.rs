//! Which replica owns which shard: a pure function of the live members, table-tested.
//!
//! - Balanced: each member owns `floor(N/R)` or `ceil(N/R)` shards.
//! - Zone-aware: each zone gets shards in proportion to its live members (largest remainder,
//!   ties to the zone named first), so no zone holds more than its share while another zone
//!   has live members, and losing a zone loses at most its share of the work.
//! - Stable: within a zone, each shard goes to the member that ranks it highest by rendezvous
//!   hashing among those with room left, so a join or a leave moves few shards.
//! - Deterministic: every replica computes the same map from the same members.

use std::collections::{BTreeMap, BTreeSet};

/// A live replica.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub identity: String,
    /// Its zone (`topology.kubernetes.io/zone`); members without one share the zone "".
    pub zone: String,
}

impl Member {
    pub fn new(identity: &str, zone: &str) -> Self {
        Self {
            identity: identity.to_owned(),
            zone: zone.to_owned(),
        }
    }
}

/// 64-bit FNV-1a, the hash Kubernetes' sharded list/watch (KEP-5866) uses.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard of an object key (`namespace/name`) among `shards`.
pub fn shard_of(key: &str, shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    u32::try_from(fnv1a64(key.as_bytes()) % shards).unwrap_or(0)
}

/// The owner of each shard `0..shards`; empty when there are no members.
pub fn assign(shards: u32, members: &[Member]) -> BTreeMap<u32, String> {
    let members: BTreeSet<&Member> = members.iter().collect();
    if members.is_empty() {
        return BTreeMap::new();
    }
    let mut zones: BTreeMap<&str, Vec<&Member>> = BTreeMap::new();
    for member in &members {
        zones.entry(member.zone.as_str()).or_default().push(member);
    }
    let quotas = zone_quotas(shards, &zones);
    // Shards go to zones by rendezvous too (stable when a zone's quota changes).
    let mut left = quotas.clone();
    let mut owners = BTreeMap::new();
    let mut per_zone: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for shard in 0..shards {
        let zone = ranked(shard, zones.keys().copied())
            .into_iter()
            .find(|zone| left.get(zone).is_some_and(|n| *n > 0));
        if let Some(zone) = zone {
            if let Some(n) = left.get_mut(zone) {
                *n -= 1;
            }
            per_zone.entry(zone).or_default().push(shard);
        }
    }
    for (zone, shards_here) in per_zone {
        let here = &zones[zone];
        let count = u32::try_from(shards_here.len()).unwrap_or(u32::MAX);
        let members_here = u32::try_from(here.len()).unwrap_or(u32::MAX);
        let (base, extra) = (count / members_here, count % members_here);
        // The first `extra` members by name may take one more.
        let mut room: BTreeMap<&str, u32> = here
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let more = u32::from(u32::try_from(i).unwrap_or(u32::MAX) < extra);
                (m.identity.as_str(), base + more)
            })
            .collect();
        for shard in shards_here {
            let owner = ranked(shard, here.iter().map(|m| m.identity.as_str()))
                .into_iter()
                .find(|m| room.get(m).is_some_and(|n| *n > 0));
            if let Some(owner) = owner {
                if let Some(n) = room.get_mut(owner) {
                    *n -= 1;
                }
                owners.insert(shard, owner.to_owned());
            }
        }
    }
    owners
}

/// Shards per zone, proportional to the zone's members (largest remainder).
fn zone_quotas<'a>(shards: u32, zones: &BTreeMap<&'a str, Vec<&Member>>) -> BTreeMap<&'a str, u32> {
    let total: u64 = zones.values().map(|m| m.len() as u64).sum();
    let mut quotas: BTreeMap<&str, u32> = BTreeMap::new();
    let mut remainders: Vec<(u64, &str)> = Vec::new();
    let mut given = 0;
    for (zone, members) in zones {
        let exact = u64::from(shards) * members.len() as u64;
        let quota = u32::try_from(exact / total).unwrap_or(u32::MAX);
        given += quota;
        quotas.insert(zone, quota);
        remainders.push((exact % total, zone));
    }
    // Largest remainder first; ties to the zone named first.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    for (_, zone) in remainders.into_iter().take((shards - given) as usize) {
        if let Some(q) = quotas.get_mut(zone) {
            *q += 1;
        }
    }
    quotas
}

/// `candidates` by their rendezvous weight for `shard`, highest first.
fn ranked<'a>(shard: u32, candidates: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut weighted: Vec<(u64, &str)> = candidates
        .map(|c| (fnv1a64(format!("{shard}/{c}").as_bytes()), c))
        .collect();
    weighted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    weighted.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(owners: &BTreeMap<u32, String>) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for owner in owners.values() {
            *counts.entry(owner.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn members(list: &[(&str, &str)]) -> Vec<Member> {
        list.iter().map(|(i, z)| Member::new(i, z)).collect()
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert!(shard_of("fleet-default/app", 6) < 6);
        assert_eq!(shard_of("x", 0), 0, "no shards is one shard");
    }

    /// Shards, members (identity, zone), and the sorted loads expected.
    type Case<'a> = (u32, &'a [(&'a str, &'a str)], &'a [usize]);

    #[test]
    fn every_shard_has_one_owner_and_loads_are_balanced() {
        let cases: [Case<'_>; 6] = [
            (6, &[("a", "")], &[6]),
            (6, &[("a", ""), ("b", ""), ("c", "")], &[2, 2, 2]),
            (7, &[("a", ""), ("b", ""), ("c", "")], &[2, 2, 3]),
            (2, &[("a", ""), ("b", ""), ("c", "")], &[1, 1]),
            (6, &[("a", "z1"), ("b", "z1"), ("c", "z2")], &[2, 2, 2]),
            (0, &[("a", "")], &[]),
        ];
        for (shards, list, loads) in cases {
            let owners = assign(shards, &members(list));
            assert_eq!(owners.len(), shards as usize, "{list:?}");
            let mut got: Vec<usize> = counts(&owners).into_values().collect();
            got.sort_unstable();
            assert_eq!(got, loads, "{shards} shards over {list:?}");
        }
        assert!(assign(6, &[]).is_empty());
    }

    #[test]
    fn zones_get_their_share_and_losing_one_moves_only_its_shards() {
        let all = members(&[
            ("a", "z1"),
            ("b", "z1"),
            ("c", "z2"),
            ("d", "z2"),
            ("e", "z3"),
            ("f", "z3"),
        ]);
        let before = assign(6, &all);
        let zone_of = |owner: &str| {
            all.iter()
                .find(|m| m.identity == owner)
                .map(|m| m.zone.clone())
        };
        for zone in ["z1", "z2", "z3"] {
            let n = before
                .values()
                .filter(|o| zone_of(o).as_deref() == Some(zone))
                .count();
            assert_eq!(n, 2, "{zone} holds its share");
        }
        let without_z3: Vec<Member> = all.iter().filter(|m| m.zone != "z3").cloned().collect();
        let after = assign(6, &without_z3);
        let moved: Vec<u32> = (0..6).filter(|s| before[s] != after[s]).collect();
        let z3_shards: Vec<u32> = (0..6)
            .filter(|s| zone_of(&before[s]).as_deref() == Some("z3"))
            .collect();
        // The survivors keep what they had (only z3's shards, and at most a rebalance of one,
        // move).
        assert!(z3_shards.iter().all(|s| moved.contains(s)));
        assert!(moved.len() <= z3_shards.len() + 1, "moved {moved:?}");
    }

    #[test]
    fn a_join_takes_its_share_moving_few_shards_and_a_flap_returns_to_the_same_map() {
        let three = members(&[("a", ""), ("b", ""), ("c", "")]);
        let before = assign(6, &three);
        let mut four = three.clone();
        four.push(Member::new("d", ""));
        let after = assign(6, &four);
        let to_d = after.values().filter(|o| *o == "d").count();
        assert!((1..=2).contains(&to_d), "d takes its share: {after:?}");
        let moved = (0..6).filter(|s| before[s] != after[s]).count();
        assert!(moved <= 3, "a join moves few shards: {moved}");
        assert_eq!(
            assign(6, &three),
            before,
            "flapping: the same members, the same map"
        );
        let reordered: Vec<Member> = three.iter().rev().cloned().collect();
        assert_eq!(
            assign(6, &reordered),
            before,
            "order of discovery does not matter"
        );
    }
}
