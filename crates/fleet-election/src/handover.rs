//! Handing a Lease over on request, and keeping two roles on different replicas.
//!
//! A replica that wants a Lease held by a live leader names itself in the Lease's
//! [`HANDOVER_ANNOTATION`](crate::record::HANDOVER_ANNOTATION) (a metadata-only write with the resourceVersion it last saw). The holder
//! sees that on its watch, ends its term (its work stops; `still_leading()` is false from that
//! moment), releases the Lease and stays away from it for one lease duration; the requester
//! takes the released Lease at once. The old owner stops before it releases and the new one
//! acquires only after the release, so there is never a moment with two owners.
//!
//! [`prefer_apart`] uses it for a binary with two roles (say, the agent's deploying and
//! monitoring): with two or more replicas the roles sit on different replicas; with one, that
//! replica holds both.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::elector::Requester;
use crate::elector::Role;

/// Whether this replica should ask for the second role's Lease: it holds neither role, and one
/// other replica holds both.
pub fn wants_handover(first: &Role, second: &Role) -> bool {
    match (first, second) {
        (
            Role::Standby {
                holder: Some(first),
            },
            Role::Standby {
                holder: Some(second),
            },
        ) => !first.is_empty() && first == second,
        _ => false,
    }
}

/// Keeps two roles apart: whenever one other replica holds both, this replica (holding
/// neither) asks for the second role's Lease; asked again every `period` while nothing
/// changes (the holder may have missed it, or another replica got it). Runs until `shutdown`.
pub async fn prefer_apart(
    mut first: watch::Receiver<Role>,
    mut second: watch::Receiver<Role>,
    requester: Requester,
    period: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let wanted = wants_handover(&first.borrow_and_update(), &second.borrow_and_update());
        if wanted {
            requester.request().await;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = first.changed() => if changed.is_err() { return },
            changed = second.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(period), if wanted => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Leadership;

    fn standby(holder: Option<&str>) -> Role {
        Role::Standby {
            holder: holder.map(str::to_owned),
        }
    }

    fn leading() -> Role {
        Role::Leading(Leadership::unconditional("l", "me"))
    }

    #[test]
    fn asks_only_when_one_other_replica_holds_both_roles() {
        let cases = [
            (standby(Some("a")), standby(Some("a")), true),
            (standby(Some("a")), standby(Some("b")), false),
            (standby(Some("a")), standby(None), false),
            (standby(None), standby(None), false),
            (standby(Some("")), standby(Some("")), false),
            (leading(), standby(Some("a")), false),
            (standby(Some("a")), leading(), false),
            (leading(), leading(), false),
        ];
        for (first, second, expected) in cases {
            assert_eq!(
                wants_handover(&first, &second),
                expected,
                "{first:?} / {second:?}"
            );
        }
    }
}
