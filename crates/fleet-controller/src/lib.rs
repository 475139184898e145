//! fleet-controller of fleet-rs: decides what runs where and rolls the truth back up, as
//! Fleet's controller does, leader-elected. What a Bundle should produce is computed by
//! `fleet_render::deployments` (pure, shared with `fleet target`).
//!
//! Shared by the reconcilers, and depending on none of them:
//! - [`error`]: the field manager and why a reconcile failed; [`settings`]: the flags they
//!   read; [`memory`]: what a term remembers between reconciles, with the [`candidates`]
//!   (the clusters Bundles may target) that Bundle reconciles running at once share;
//! - [`context`]: one term's client, caches, claims and writer; [`namespaces`]: the
//!   namespaces the controller creates; [`wiring`]: the warm caches and how a reconciler is
//!   started for a term;
//! - [`summary`]: BundleDeployment states and summaries (pure); which other namespaces'
//!   Clusters a bundle targets is `fleet_render::mappings` (shared with `fleet target`);
//! - what the caches hold of a BundleDeployment: [`deployed`] for the Bundle work and its
//!   roll-ups, [`placements`] for the Cluster roll-ups (under dynamic shards); the options
//!   of a BundleDeployment, cached or planned, as [`kept_options`] (equal ones shared).
//!
//! The reconcilers, each with its decisions as pure functions and its `run` (what it watches,
//! how events map to its keys):
//! - [`bundles`]: Bundles to BundleDeployments and Content (planned within the
//!   [`plan_budget`]), and the Bundle status;
//! - [`helm_secrets`]: Helm repository credentials copied next to HelmOp BundleDeployments;
//! - [`clusters`]: Cluster and ClusterGroup status, written after a fan-out's burst of
//!   creations ([`bursts`]);
//! - [`rollups`]: GitRepo and HelmOp status roll-ups from BundleDeployments;
//! - [`import`]: manager-initiated import (agents installed downstream);
//! - [`registration`]: registration tokens and agent registrations, with the [`identities`]
//!   they grant;
//! - [`bootstrap`]: the `fleet-local` workspace with the management cluster.

pub mod bootstrap;
pub mod bundles;
pub mod bursts;
pub mod candidates;
pub mod clusters;
pub mod context;
pub mod deployed;
pub mod error;
pub mod helm_secrets;
pub mod identities;
pub mod import;
pub mod kept_labels;
pub mod kept_options;
pub mod memory;
pub mod metrics;
pub mod namespaces;
pub mod placements;
pub mod plan_budget;
pub mod registration;
pub mod rollups;
pub mod settings;
pub mod shared;
pub mod summary;
pub mod wiring;
