//! The write gate: the one way a fleet-rs binary writes to the Kubernetes API.
//!
//! A [`Writer`] is made for one claim: a leadership term, or the term of the shard an object
//! belongs to. Every request it sends
//! - checks that claim with `still_leading()` immediately before it goes out (a replica frozen
//!   past its lease, whose term another replica now holds, sends nothing: the write is refused
//!   with [`WriteError::NotLeading`] and counted in `fleet_api_writes_refused_total`);
//! - carries the binary's field manager (or a sub-manager of it, `<manager>-<part>`, that the
//!   caller names), whatever else the caller's parameters say;
//! - is counted by kind, verb and claim (the Lease, or `none`) in `fleet_api_writes_total` as
//!   it is let through.
//!
//! Writes that belong to no term say so with [`WriteGate::unclaimed`]: a push webhook served
//! by every replica, the namespace of the Lease created before the election starts, `fleet
//! apply` run by a user. (An agent registers under its deploying role's term.)
//!
//! `tests/write_gate.rs` fails when an API write call appears anywhere else in the binaries'
//! crates. The election crate's Lease writes are the one exception: they make the claims.

use std::fmt::Debug;

use fleet_election::Leadership;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Resource};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a write was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The claim was gone right before the request: nothing was sent.
    #[error("not writing {verb} {kind} {name}: this replica no longer holds the claim")]
    NotLeading {
        verb: &'static str,
        kind: String,
        name: String,
    },
    /// The API server refused the request, or it failed on the way.
    #[error("{verb} {kind} {name}: {source}")]
    Api {
        verb: &'static str,
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl WriteError {
    /// The HTTP status the API server answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(status) => Some(status.code),
                _ => None,
            },
            Self::NotLeading { .. } => None,
        }
    }

    /// The object already exists (409 on create), or changed since it was read (409 on an
    /// update with a resourceVersion).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// The write was refused because the claim was gone.
    pub fn is_not_leading(&self) -> bool {
        matches!(self, Self::NotLeading { .. })
    }
}

type Labels = Vec<(String, String)>;

/// A binary's gate: its field manager and write counters, shared by all its [`Writer`]s.
#[derive(Debug, Clone)]
pub struct WriteGate {
    manager: String,
    writes: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
}

impl WriteGate {
    /// The gate of a binary writing as field manager `manager`; registers its counters.
    pub fn new(manager: &str, registry: &mut Registry) -> Self {
        let gate = Self::unregistered(manager);
        registry.register(
            "fleet_api_writes",
            "API writes let through the gate, by kind, verb and claim (the Lease written under)",
            gate.writes.clone(),
        );
        registry.register(
            "fleet_api_writes_refused",
            "API writes not sent because the claim was gone right before them, by kind, verb and claim",
            gate.refused.clone(),
        );
        gate
    }

    /// A gate whose counters are not exposed (tools and tests).
    pub fn unregistered(manager: &str) -> Self {
        Self {
            manager: manager.to_owned(),
            writes: Family::default(),
            refused: Family::default(),
        }
    }

    pub fn manager(&self) -> &str {
        &self.manager
    }

    /// The writer of one claim: each write is sent only while `claim.still_leading()`.
    pub fn writer(&self, claim: Leadership) -> Writer {
        self.with(Claim::Term(claim))
    }

    /// A writer for writes that belong to no term; `why` names them in the logs.
    pub fn unclaimed(&self, why: &'static str) -> Writer {
        self.with(Claim::Unclaimed(why))
    }

    /// A writer that refuses everything (an object of a shard this replica does not hold).
    pub fn refusing(&self) -> Writer {
        self.with(Claim::None)
    }

    fn with(&self, claim: Claim) -> Writer {
        Writer {
            gate: self.clone(),
            claim,
        }
    }
}

#[derive(Debug, Clone)]
enum Claim {
    Term(Leadership),
    Unclaimed(&'static str),
    None,
}

/// Writes under one claim ([`WriteGate::writer`]).
#[derive(Debug, Clone)]
pub struct Writer {
    gate: WriteGate,
    claim: Claim,
}

impl Writer {
    /// Whether a write would be sent now.
    pub fn still_leading(&self) -> bool {
        match &self.claim {
            Claim::Term(leadership) => leadership.still_leading(),
            Claim::Unclaimed(_) => true,
            Claim::None => false,
        }
    }

    /// The replica writing: its identity in the claim's Lease (the gate's field manager for
    /// unclaimed writes).
    pub fn identity(&self) -> &str {
        match &self.claim {
            Claim::Term(leadership) => leadership.identity(),
            Claim::Unclaimed(_) | Claim::None => &self.gate.manager,
        }
    }

    /// The field manager every write carries.
    pub fn manager(&self) -> &str {
        &self.gate.manager
    }

    /// Creates `object`.
    pub async fn create<K>(&self, api: &Api<K>, object: &K) -> Result<K, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Serialize + Debug,
        K::DynamicType: Default,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        let params = PostParams {
            field_manager: Some(self.gate.manager.clone()),
            ..PostParams::default()
        };
        let sent = self.check::<K>("create", &name)?;
        self.done::<K, _>(sent, &name, api.create(&params, object).await)
    }

    /// Patches `name` (server-side apply, merge or JSON patch) with the gate's field manager.
    pub async fn patch<K, P>(
        &self,
        api: &Api<K>,
        name: &str,
        params: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<K, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
        P: Serialize + Debug,
    {
        let params = self.params(params);
        let sent = self.check::<K>("patch", name)?;
        self.done::<K, _>(sent, name, api.patch(name, &params, patch).await)
    }

    /// Patches the status of `name`.
    pub async fn patch_status<K, P>(
        &self,
        api: &Api<K>,
        name: &str,
        params: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<K, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
        P: Serialize + Debug,
    {
        let params = self.params(params);
        let sent = self.check::<K>("patch-status", name)?;
        self.done::<K, _>(sent, name, api.patch_status(name, &params, patch).await)
    }

    /// Deletes `name`; `Ok(false)` when it was already gone.
    pub async fn delete<K>(
        &self,
        api: &Api<K>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<bool, WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let sent = self.check::<K>("delete", name)?;
        match self.done::<K, _>(sent, name, api.delete(name, params).await) {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deletes the objects `list` selects.
    pub async fn delete_collection<K>(
        &self,
        api: &Api<K>,
        params: &DeleteParams,
        list: &ListParams,
    ) -> Result<(), WriteError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let selector = list.label_selector.clone().unwrap_or_default();
        let sent = self.check::<K>("delete-collection", &selector)?;
        self.done::<K, _>(sent, &selector, api.delete_collection(params, list).await)
            .map(|_| ())
    }

    /// The counters' labels: kind, verb, and the claim (its Lease, or `none`).
    fn labels(&self, kind: &str, verb: &str) -> Labels {
        let claim = match &self.claim {
            Claim::Term(leadership) => leadership.lease(),
            Claim::Unclaimed(_) | Claim::None => "none",
        };
        labels(kind, verb, claim)
    }

    /// Patches `name` of a kind known only at run time (`resource`).
    pub async fn patch_dynamic<P>(
        &self,
        api: &Api<DynamicObject>,
        resource: &ApiResource,
        name: &str,
        params: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<DynamicObject, WriteError>
    where
        P: Serialize + Debug,
    {
        let params = self.params(params);
        let sent = self.check_kind(&resource.kind, "patch", name)?;
        let result = api.patch(name, &params, patch).await;
        self.done_kind(resource.kind.clone(), sent, name, result)
    }

    /// The caller's parameters with the gate's field manager. A sub-manager of it
    /// (`<manager>-<part>`, for a reconciler that server-side applies its own disjoint part of
    /// a status) is kept: one manager for both would make each apply remove the other's fields.
    fn params(&self, params: &PatchParams) -> PatchParams {
        let manager = &self.gate.manager;
        let field_manager = match &params.field_manager {
            Some(sub) if sub.starts_with(&format!("{manager}-")) => sub.clone(),
            _ => manager.clone(),
        };
        PatchParams {
            field_manager: Some(field_manager),
            ..params.clone()
        }
    }

    /// The claim, asked right before the request: `Ok(verb)` to send it.
    fn check<K>(&self, verb: &'static str, name: &str) -> Result<&'static str, WriteError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        self.check_kind(&kind_of::<K>(), verb, name)
    }

    fn check_kind(
        &self,
        kind: &str,
        verb: &'static str,
        name: &str,
    ) -> Result<&'static str, WriteError> {
        if self.still_leading() {
            if let Claim::Unclaimed(why) = &self.claim {
                tracing::trace!(verb, name, why, "unclaimed write");
            }
            // Counted as it is let through, so that a process frozen with a request in flight
            // counts it before the freeze, never after it resumes.
            self.gate
                .writes
                .get_or_create(&self.labels(kind, verb))
                .inc();
            return Ok(verb);
        }
        self.gate
            .refused
            .get_or_create(&self.labels(kind, verb))
            .inc();
        tracing::debug!(verb, kind, name, "write refused: the claim is gone");
        Err(WriteError::NotLeading {
            verb,
            kind: kind.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Names a failed request.
    fn done<K, T>(
        &self,
        verb: &'static str,
        name: &str,
        result: Result<T, kube::Error>,
    ) -> Result<T, WriteError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        self.done_kind(kind_of::<K>(), verb, name, result)
    }

    fn done_kind<T>(
        &self,
        kind: String,
        verb: &'static str,
        name: &str,
        result: Result<T, kube::Error>,
    ) -> Result<T, WriteError> {
        result.map_err(|source| WriteError::Api {
            verb,
            kind,
            name: name.to_owned(),
            source: Box::new(source),
        })
    }
}

fn kind_of<K>() -> String
where
    K: Resource,
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

fn labels(kind: &str, verb: &str, claim: &str) -> Labels {
    vec![
        ("kind".to_owned(), kind.to_owned()),
        ("verb".to_owned(), verb.to_owned()),
        ("claim".to_owned(), claim.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_carry_the_gates_field_manager_or_a_sub_manager_of_it() {
        let writer = WriteGate::unregistered("fleet-controller").unclaimed("test");
        let manager = |params: PatchParams| writer.params(&params).field_manager;
        let own = Some("fleet-controller".to_owned());
        assert_eq!(manager(PatchParams::default()), own);
        assert_eq!(manager(PatchParams::apply("someone-else")), own);
        assert_eq!(manager(PatchParams::apply("fleet-controllerx")), own);
        assert_eq!(
            manager(PatchParams::apply("fleet-controller-import").force()),
            Some("fleet-controller-import".to_owned())
        );
    }

    #[test]
    fn a_refusing_writer_refuses_and_counts() {
        let gate = WriteGate::unregistered("m");
        let error = gate
            .refusing()
            .check::<k8s_openapi::api::core::v1::ConfigMap>("create", "x")
            .expect_err("refused");
        assert!(error.is_not_leading(), "{error}");
        let refused = gate
            .refused
            .get_or_create(&labels("ConfigMap", "create", "none"))
            .get();
        assert_eq!(refused, 1);
        assert!(gate.unclaimed("test").still_leading());
    }
}
