//! The elector task: one loop per Lease that watches, acquires, renews and releases.
//!
//! Timing model (ARCHITECTURE.md section 4):
//! - a standby acts the moment its watch shows the Lease released, or when the holder's claim
//!   runs out (`lease duration` after this replica saw the record last change); it never
//!   writes while a live leader holds the Lease;
//! - the leader renews every `retry period`; its term's deadline is `renew deadline` after the
//!   *sending* of its last successful renew. Any standby's takeover happens at least
//!   `lease duration` after it saw that renew, which is after it was sent, so a leader whose
//!   deadline passes has stopped acting `lease duration - renew deadline` before anyone else
//!   may start;
//! - every write carries the `resourceVersion` last seen: concurrent writers get 409, re-read,
//!   and decide again.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout_at};

mod ending;

pub use ending::Requester;

use crate::config::ElectionConfig;
use crate::leadership::Leadership;
use crate::metrics::{ElectionMetrics, LeaseLabels};
use crate::record::{Observed, Step, clear_handover, decide, handover_requested_by, next_spec};
use crate::store::{KubeLeaseStore, LeaseEvent, LeaseStore, StoreError};

/// This replica's role, as published to the work and to readiness endpoints.
#[derive(Debug, Clone)]
pub enum Role {
    /// Not leading; `holder` is the current holder as last seen (if any).
    Standby {
        holder: Option<String>,
    },
    Leading(Leadership),
}

/// What happened, for logs' readers, tests and the failover benchmark.
#[derive(Debug, Clone, PartialEq)]
pub enum ElectionEvent {
    /// A standby found the Lease free (released, expired or missing) and tries to take it.
    Attempting,
    /// This replica leads. `failover` is the time since the previous holder's last observed
    /// renew or release, when there was a previous holder.
    Acquired {
        failover: Option<Duration>,
        transitions: i32,
    },
    RenewFailed {
        error: String,
    },
    Lost {
        reason: String,
    },
    Released,
    /// Another replica now holds the Lease.
    NewLeader {
        holder: String,
    },
}

pub(crate) enum Command {
    /// Fire the current term's stop signal but keep renewing (graceful drain).
    StopWork,
    /// Ask the holder to hand the Lease over to this replica (a hand-over request).
    RequestHandover,
    /// Contend for the Lease (true) or only watch it, releasing it if held (false).
    Contend(bool),
    /// Release the Lease (if held) and end the elector.
    Release,
}

/// A Lease elector, not yet running.
#[derive(Debug)]
pub struct Elector<S = KubeLeaseStore> {
    config: ElectionConfig,
    store: S,
    metrics: ElectionMetrics,
    contending: bool,
    coordinated: bool,
    shared: bool,
}

impl Elector<KubeLeaseStore> {
    /// An elector on `config.namespace/config.lease_name` through `client`.
    pub fn new(client: kube::Client, config: ElectionConfig, metrics: ElectionMetrics) -> Self {
        let store = KubeLeaseStore::new(client, &config.namespace, &config.lease_name);
        Self::with_store(store, config, metrics)
    }
}

impl<S: LeaseStore> Elector<S> {
    pub fn with_store(store: S, config: ElectionConfig, metrics: ElectionMetrics) -> Self {
        Self {
            config,
            store,
            metrics,
            contending: true,
            coordinated: false,
            shared: false,
        }
    }

    /// A Lease held by a group under one identity (the config's): every member renews it and
    /// leads while its own renews go through; none releases it or hands it over, since the
    /// others may still hold it. When the last member is gone it runs out.
    #[must_use]
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Coordinated leader election (KEP-4355): the API server picks the holder and writes it
    /// into the Lease; this elector never acquires on its own, renews while the Lease names it,
    /// and hands over when the Lease names another `preferredHolder`. See the `coordinated` module.
    #[must_use]
    pub fn coordinated(mut self) -> Self {
        self.coordinated = true;
        self
    }

    /// Starts watching without trying to acquire (see [`ElectorHandle::set_contending`]).
    #[must_use]
    pub fn passive(mut self) -> Self {
        self.contending = false;
        self
    }

    /// Starts the elector task.
    pub fn spawn(self) -> ElectorHandle {
        let (role_tx, role_rx) = watch::channel(Role::Standby { holder: None });
        let (events, _) = broadcast::channel(256);
        let (commands_tx, commands_rx) = mpsc::channel(8);
        let labels = LeaseLabels {
            lease: self.config.lease_name.clone(),
        };
        self.metrics.is_leader.get_or_create(&labels).set(0);
        let stop_grace = self.config.stop_grace;
        let retry_period = self.config.timings.retry_period;
        let machine = Machine {
            config: self.config,
            store: self.store,
            metrics: self.metrics,
            labels,
            events: events.clone(),
            role: role_tx,
            lease: None,
            observed: None,
            term: None,
            next_attempt: Instant::now(),
            failover_from: None,
            announced_attempt: false,
            pending_release: false,
            release_deadline: Instant::now(),
            contending: self.contending,
            coordinated: self.coordinated,
            shared: self.shared,
        };
        let task = tokio::spawn(machine.run(commands_rx));
        ElectorHandle {
            role: role_rx,
            events,
            commands: commands_tx,
            task,
            stop_grace,
            retry_period,
        }
    }
}

/// Controls a running elector.
#[derive(Debug)]
pub struct ElectorHandle {
    role: watch::Receiver<Role>,
    events: broadcast::Sender<ElectionEvent>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    stop_grace: Duration,
    retry_period: Duration,
}

impl ElectorHandle {
    /// The current role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// A receiver of role changes (e.g. for a readiness endpoint).
    pub fn roles(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ElectionEvent> {
        self.events.subscribe()
    }

    /// Waits until this replica leads (a term whose work has not been told to stop); `None` if
    /// the elector has ended.
    pub async fn leading(&mut self) -> Option<Leadership> {
        let role = self
            .role
            .wait_for(|role| matches!(role, Role::Leading(l) if !l.is_cancelled()))
            .await
            .ok()?;
        match &*role {
            Role::Leading(leadership) => Some(leadership.clone()),
            Role::Standby { .. } => None,
        }
    }

    /// Something that asks the Lease's holder to hand it over to this replica.
    pub fn handover_requester(&self) -> Requester {
        Requester::new(self.commands.clone())
    }

    /// Whether this replica tries to acquire the Lease. Turned off while leading, the term
    /// ends (work stops, `still_leading()` turns false) and the Lease is released; while off,
    /// the Lease is still watched, so turning it on later acquires as soon as the Lease is
    /// free or its holder's claim has run out, as this replica has been timing it.
    pub async fn set_contending(&self, contending: bool) {
        let _ = self.commands.send(Command::Contend(contending)).await;
    }

    /// Tells the current term's work to stop while the Lease stays held and renewed.
    pub async fn request_stop(&self) {
        let _ = self.commands.send(Command::StopWork).await;
    }

    /// How long work may take to stop before it is aborted.
    pub fn stop_grace(&self) -> Duration {
        self.stop_grace
    }

    pub(crate) fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// Releases the Lease (if held) so a standby takes over at once, and ends the elector.
    /// Call it only after the work guarded by the Lease has stopped.
    pub async fn release(self) {
        let _ = self.commands.send(Command::Release).await;
        let _ = self.task.await;
    }
}

struct Machine<S> {
    config: ElectionConfig,
    store: S,
    metrics: ElectionMetrics,
    labels: LeaseLabels,
    events: broadcast::Sender<ElectionEvent>,
    role: watch::Sender<Role>,
    /// The Lease object last read or written (its resourceVersion goes into the next write).
    lease: Option<Lease>,
    observed: Option<Observed>,
    term: Option<Leadership>,
    /// No attempt (renew or acquire) before this instant.
    next_attempt: Instant,
    /// When this replica last saw the Lease change under another holder (or be released).
    failover_from: Option<Instant>,
    announced_attempt: bool,
    /// A hand-over ended the term; the released record is still to be written.
    pending_release: bool,
    /// Whether to acquire the Lease when it is free (else only watch it).
    contending: bool,
    /// The API server picks the holder (coordinated leader election).
    coordinated: bool,
    /// A group holds the Lease under one identity: never released nor handed over by one member.
    shared: bool,
    /// The deadline of the term that ended last (after it, the Lease is not written).
    release_deadline: Instant,
}

impl<S: LeaseStore> Machine<S> {
    fn identity(&self) -> &str {
        &self.config.identity
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        tracing::info!(lease = %self.config.lease_name, namespace = %self.config.namespace, identity = %self.identity(), "leader election started");
        let mut watch = self.store.watch();
        let mut watching = true;
        self.refresh().await;
        loop {
            let deadline = self.term.as_ref().map(Leadership::deadline);
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::StopWork) => {
                        if let Some(term) = &self.term {
                            term.request_stop();
                        }
                    }
                    Some(Command::RequestHandover) => self.request_handover().await,
                    Some(Command::Contend(contending)) => self.set_contending(contending),
                    Some(Command::Release) | None => break,
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.lose("the renew deadline passed without a successful renew");
                }
                event = watch.next(), if watching => match event {
                    Some(event) => self.on_event(event),
                    None => watching = false,
                },
                () = sleep_until(wake) => self.attempt().await,
            }
            if std::mem::take(&mut self.pending_release) {
                self.write_released().await;
            }
        }
        self.release().await;
    }

    fn next_wake(&self, now: Instant) -> Instant {
        if self.term.is_some() {
            return self.next_attempt;
        }
        if !self.contending {
            return now + Duration::from_secs(3600);
        }
        let step = decide(self.observed.as_ref(), self.identity(), now);
        if self.coordinated && !matches!(step, Step::Renew) {
            // Only the API server's choice, seen on the watch, makes this replica act.
            return now + Duration::from_secs(3600);
        }
        match step {
            Step::WaitUntil(until) => until.max(self.next_attempt),
            Step::Create | Step::Renew | Step::Acquire => self.next_attempt,
        }
    }

    fn emit(&self, event: ElectionEvent) {
        let _ = self.events.send(event);
    }

    fn publish_standby(&self) {
        let holder = self
            .observed
            .as_ref()
            .map(|o| o.holder().to_owned())
            .filter(|h| !h.is_empty());
        self.role.send_replace(Role::Standby { holder });
    }

    /// Re-reads the Lease (after a conflict, and at start).
    async fn refresh(&mut self) {
        match self.store.get().await {
            Ok(Some(lease)) => self.observe(lease),
            Ok(None) => self.on_deleted(),
            Err(e) => {
                tracing::debug!(lease = %self.config.lease_name, error = %e, "reading the Lease failed")
            }
        }
    }

    fn on_event(&mut self, event: LeaseEvent) {
        match event {
            LeaseEvent::Changed(lease) => self.observe(*lease),
            LeaseEvent::Deleted => self.on_deleted(),
            LeaseEvent::Error(error) => {
                tracing::debug!(lease = %self.config.lease_name, %error, "Lease watch error; it restarts with backoff");
            }
        }
    }

    fn observe(&mut self, lease: Lease) {
        if is_older(&lease, self.lease.as_ref()) {
            // A lagging watch delivering a version before one we already read or wrote.
            return;
        }
        let now = Instant::now();
        let spec = lease.spec.clone().unwrap_or_default();
        let previous_holder = self.observed.as_ref().map(|o| o.holder().to_owned());
        let observed = Observed::update(self.observed.as_ref(), spec, now);
        let changed = observed.changed_at == now;
        let holder = observed.holder().to_owned();
        let requester = handover_requested_by(&lease)
            .map(str::to_owned)
            .or_else(|| {
                // Coordinated election: the API server prefers another candidate.
                lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.preferred_holder.clone())
                    .filter(|p| self.coordinated && !p.is_empty())
            });
        self.lease = Some(lease);
        self.observed = Some(observed);
        if let Some(requester) = requester
            && !self.shared
            && self.term.is_some()
            && holder == self.identity()
            && requester != self.identity()
        {
            self.hand_over(&requester);
            return;
        }
        if !changed || holder == self.identity() {
            return;
        }
        self.failover_from = Some(now);
        if previous_holder.as_deref() != Some(holder.as_str()) {
            if holder.is_empty() {
                tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), "observed the Lease released");
            } else {
                tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), %holder, "observed new leader");
                self.announced_attempt = false;
                self.emit(ElectionEvent::NewLeader {
                    holder: holder.clone(),
                });
            }
        }
        if self.term.is_some() {
            self.lose(&format!(
                "the Lease now names {holder:?} as holder (written by someone else)"
            ));
        } else {
            self.publish_standby();
        }
    }

    fn on_deleted(&mut self) {
        self.lease = None;
        self.observed = None;
        if self.term.is_some() {
            self.lose("the Lease was deleted");
        }
    }

    /// Ends the current term: the work's stop signal fires and `still_leading()` turns false.
    fn lose(&mut self, reason: &str) {
        let Some(term) = self.term.take() else {
            return;
        };
        term.end();
        self.metrics.is_leader.get_or_create(&self.labels).set(0);
        tracing::warn!(lease = %self.config.lease_name, identity = %self.identity(), reason, "leadership lost");
        self.emit(ElectionEvent::Lost {
            reason: reason.to_owned(),
        });
        self.next_attempt = Instant::now() + self.config.timings.retry_period;
        self.announced_attempt = false;
        self.publish_standby();
    }

    fn set_contending(&mut self, contending: bool) {
        self.contending = contending;
        if contending {
            self.next_attempt = Instant::now();
        } else if self.term.is_some() {
            tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), "no longer contending: releasing the Lease");
            self.pending_release = self.end_term() && !self.shared;
        }
    }

    /// One acquire or renew attempt, if the decision calls for one.
    async fn attempt(&mut self) {
        if self.term.is_none() && !self.contending {
            return;
        }
        let step = decide(self.observed.as_ref(), self.identity(), Instant::now());
        if matches!(step, Step::WaitUntil(_))
            || (self.coordinated && self.term.is_none() && !matches!(step, Step::Renew))
        {
            return;
        }
        let leading = self.term.is_some();
        if !leading && !self.announced_attempt {
            self.announced_attempt = true;
            tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), "attempting to acquire the Lease");
            self.emit(ElectionEvent::Attempting);
        }
        let spec = next_spec(
            &step,
            self.observed.as_ref().map(|o| &o.spec),
            self.identity(),
            self.config.timings.lease_duration_seconds(),
            jiff::Timestamp::now(),
        );
        let sent_at = Instant::now();
        let request_deadline = match &self.term {
            Some(term) => term.deadline(),
            None => sent_at + self.config.timings.retry_period.max(Duration::from_secs(1)),
        };
        let result = match (&step, &self.lease) {
            (Step::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec.clone()),
                };
                timeout_at(request_deadline, self.store.create(&lease)).await
            }
            (_, Some(current)) => {
                let mut lease = current.clone();
                lease.spec = Some(spec.clone());
                if !leading {
                    // A request to hand the Lease over is answered by this acquire.
                    clear_handover(&mut lease);
                }
                timeout_at(request_deadline, self.store.replace(&lease)).await
            }
        };
        let result = result.unwrap_or_else(|_| {
            Err(StoreError::Other(format!(
                "no answer from the API server within {:?}",
                request_deadline - sent_at
            )))
        });
        match result {
            Ok(lease) => self.written(lease, spec, sent_at),
            Err(StoreError::Conflict(message)) => {
                tracing::debug!(lease = %self.config.lease_name, %message, "write conflict; re-reading the Lease");
                self.refresh().await;
                self.next_attempt = Instant::now();
            }
            Err(StoreError::Other(error)) => {
                self.next_attempt = Instant::now() + self.config.timings.retry_period;
                if leading {
                    self.metrics
                        .renew_failures
                        .get_or_create(&self.labels)
                        .inc();
                    tracing::warn!(lease = %self.config.lease_name, identity = %self.identity(), %error, "renew failed");
                    self.emit(ElectionEvent::RenewFailed { error });
                } else {
                    tracing::debug!(lease = %self.config.lease_name, %error, "acquire attempt failed");
                }
            }
        }
    }

    fn written(
        &mut self,
        lease: Lease,
        spec: k8s_openapi::api::coordination::v1::LeaseSpec,
        sent_at: Instant,
    ) {
        let transitions = spec.lease_transitions.unwrap_or(0);
        self.lease = Some(lease);
        self.observed = Some(Observed {
            spec,
            changed_at: sent_at,
        });
        self.next_attempt = sent_at + self.config.timings.retry_period;
        let deadline = sent_at + self.config.timings.renew_deadline;
        if let Some(term) = &self.term {
            term.extend_to(deadline);
            return;
        }
        let leadership = Leadership::new(&self.config.lease_name, self.identity(), deadline);
        let failover = self.failover_from.take().map(|from| from.elapsed());
        self.term = Some(leadership.clone());
        self.metrics.is_leader.get_or_create(&self.labels).set(1);
        self.metrics.transitions.get_or_create(&self.labels).inc();
        if let Some(failover) = failover {
            self.metrics
                .failover
                .get_or_create(&self.labels)
                .observe(failover.as_secs_f64());
        }
        tracing::info!(lease = %self.config.lease_name, identity = %self.identity(), transitions, failover_ms = failover.map(|d| d.as_millis()), "acquired the Lease");
        self.emit(ElectionEvent::Acquired {
            failover,
            transitions,
        });
        self.role.send_replace(Role::Leading(leadership));
    }
}

/// Whether `lease` is an older version than `current`. Resource versions are opaque in
/// general; on etcd they are revisions, so when both parse as integers they are compared,
/// else every event is taken as new.
fn is_older(lease: &Lease, current: Option<&Lease>) -> bool {
    let version = |l: &Lease| {
        l.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (version(lease), current.and_then(version)) {
        (Some(new), Some(old)) => new < old,
        _ => false,
    }
}
