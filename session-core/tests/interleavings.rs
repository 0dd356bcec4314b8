//! The session lifecycle under every interleaving of two concurrent requests.
//!
//! Two requests of one browser hold the cookie of a stored session, each served by its own
//! [`SessionManager`] (as two processes would be) over one shared [`MemoryStore`]. Their
//! only interaction is through the store, and between two store calls a request computes
//! deterministically from what the store answered. So the outcome of a run is fixed by
//! the order in which the two requests' store calls take effect, and checking every such
//! order checks every possible execution, as loom does for threads.
//!
//! The method is stateless model checking with replay:
//!
//! - [`Gated`] wraps the store: every call first reports itself to the scheduler and waits
//!   to be released; which request calls is known from a task-local set when the request
//!   is spawned. Calls outside a request (the setup) pass straight through.
//! - The scheduler waits until each request is blocked at a store call or finished. With
//!   one request blocked it releases it; with both blocked it has a *decision* to make,
//!   and releases the request the current choice vector names (request 0 past its end),
//!   recording the decision. A released request runs alone until its next store call, so
//!   each call is atomic with respect to the other request.
//! - After a run the choice vector advances like an odometer over the recorded
//!   decisions (the last decision with an untried option takes its next option, later
//!   ones go back to the default), which enumerates every schedule depth first. Each
//!   schedule runs again from a fresh setup; a replayed prefix must meet the same
//!   decisions, which checks that the runs are deterministic.
//!
//! By default both requests load the session before either commits (a barrier the
//! scheduler releases once every request reached it); the two loads are scheduled calls
//! too. Each scenario is also explored with the loads free, so that one request may load
//! after the other committed.
//!
//! After every schedule the invariants of the lifecycle are checked (no commit fails, at
//! most one live session, no resurrection after logout, no lost write, no cookie set for
//! a session a logout had ended, ...) together with the outcome each scenario must have;
//! a violation panics with the schedule and the store calls it made.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;
use session_core::{
    Capabilities, Commit, CookieAction, Error, Lookup, MemoryStore, Record, Result, Session,
    SessionConfig, SessionKey, SessionManager, Store, async_trait,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

tokio::task_local! {
    /// The request (0 or 1) the current task serves.
    static REQUEST: usize;
}

/// How many decisions one schedule may make before the explorer calls it a livelock.
const MAX_DECISIONS: usize = 200;

// ---------------------------------------------------------------------------------------
// The gated store
// ---------------------------------------------------------------------------------------

/// Where a request waits for the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// About to make this store call.
    Store(String),
    /// Loaded its session; waits for the other request to load too.
    Barrier,
}

/// What a request tells the scheduler.
enum Event {
    Blocked {
        request: usize,
        step: Step,
        resume: oneshot::Sender<()>,
    },
    Finished {
        request: usize,
    },
}

/// One line of a run's history, in the order things happened.
#[derive(Clone, Debug)]
enum Entry {
    /// A store call made by `request`; `ended` names the key a successful `end` ended.
    Call {
        request: usize,
        text: String,
        ended: Option<usize>,
    },
    /// `request`'s commit returned.
    Returned { request: usize, text: String },
}

/// A `MemoryStore` every call of which waits for the scheduler's permission, and which
/// remembers every key `create` returned and every call made.
struct Gated {
    inner: MemoryStore,
    events: mpsc::UnboundedSender<Event>,
    /// Every key `create` returned, in order: key `K<i>` is `created[i]`.
    created: Mutex<Vec<SessionKey>>,
    log: Mutex<Vec<Entry>>,
}

impl Gated {
    fn new(events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            inner: MemoryStore::new(),
            events,
            created: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        }
    }

    fn created(&self) -> Vec<SessionKey> {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn log(&self) -> Vec<Entry> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The index of `key` among the created keys.
    fn index_of(&self, key: &SessionKey) -> Option<usize> {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .position(|k| k == key)
    }

    /// A stable name for `key` (keys are random; their order of creation is not).
    fn name(&self, key: &SessionKey) -> String {
        self.index_of(key)
            .map_or_else(|| "K?".to_owned(), |i| format!("K{i}"))
    }

    /// Waits until the scheduler lets the current request make `call`.
    async fn gate(&self, call: String) {
        let Ok(request) = REQUEST.try_with(|r| *r) else {
            return; // the setup, outside any request
        };
        let (resume, resumed) = oneshot::channel();
        self.events
            .send(Event::Blocked {
                request,
                step: Step::Store(call),
                resume,
            })
            .expect("the scheduler listens");
        resumed.await.expect("the scheduler releases every request");
    }

    fn record(&self, text: String, ended: Option<usize>) {
        if let Ok(request) = REQUEST.try_with(|r| *r) {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Entry::Call {
                    request,
                    text,
                    ended,
                });
        }
    }

    fn note_returned(&self, request: usize, text: String) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Entry::Returned { request, text });
    }
}

/// A short form of a store result for the history.
fn outcome<T>(r: &Result<T>, ok: impl FnOnce(&T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(Error::Conflict) => "Conflict".to_owned(),
        Err(Error::NotFound) => "NotFound".to_owned(),
        Err(e) => format!("error {e}"),
    }
}

fn lookup_text(l: &Lookup) -> String {
    match l {
        Lookup::Live(r) => format!("Live v{}", r.version),
        Lookup::Ended => "Ended".to_owned(),
        Lookup::Absent => "Absent".to_owned(),
        other => format!("{other:?}"),
    }
}

#[async_trait]
impl Store for Gated {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        self.gate("create".to_owned()).await;
        let got = self.inner.create(record).await;
        if let Ok(key) = &got {
            self.created
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(key.clone());
        }
        self.record(
            format!("create -> {}", outcome(&got, |k| self.name(k))),
            None,
        );
        got
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.gate(format!("load {}", self.name(key))).await;
        let got = self.inner.load(key).await;
        let text = outcome(&got, |r| {
            r.as_ref()
                .map_or_else(|| "None".to_owned(), |r| format!("v{}", r.version))
        });
        self.record(format!("load {} -> {text}", self.name(key)), None);
        got
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        self.gate(format!("lookup {}", self.name(key))).await;
        let got = self.inner.lookup(key).await;
        self.record(
            format!(
                "lookup {} -> {}",
                self.name(key),
                outcome(&got, lookup_text)
            ),
            None,
        );
        got
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        let name = self.name(key);
        self.gate(format!("save {name}@v{}", record.version)).await;
        let got = self.inner.save(key, record).await;
        self.record(
            format!(
                "save {name}@v{} -> {}",
                record.version,
                outcome(&got, |_| "ok".to_owned())
            ),
            None,
        );
        got
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        let name = self.name(key);
        self.gate(format!("touch {name}")).await;
        let got = self.inner.touch(key, expires_at).await;
        self.record(
            format!("touch {name} -> {}", outcome(&got, |_| "ok".to_owned())),
            None,
        );
        got
    }

    async fn end(&self, key: &SessionKey, version: u64, until: OffsetDateTime) -> Result<()> {
        let name = self.name(key);
        self.gate(format!("end {name}@v{version}")).await;
        let got = self.inner.end(key, version, until).await;
        let ended = got.as_ref().ok().and_then(|()| self.index_of(key));
        self.record(
            format!(
                "end {name}@v{version} -> {}",
                outcome(&got, |()| "ok".to_owned())
            ),
            ended,
        );
        got
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let name = self.name(key);
        self.gate(format!("delete {name}")).await;
        let got = self.inner.delete(key).await;
        self.record(
            format!("delete {name} -> {}", outcome(&got, |()| "ok".to_owned())),
            None,
        );
        got
    }

    async fn clear_expired(&self) -> Result<u64> {
        self.gate("clear_expired".to_owned()).await;
        self.inner.clear_expired().await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// Tells the scheduler that a request is over, however its task ends (even by a panic).
struct FinishGuard {
    request: usize,
    events: mpsc::UnboundedSender<Event>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        // The scheduler may already be gone when the test is failing; nothing to do then.
        let _ = self.events.send(Event::Finished {
            request: self.request,
        });
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// What a request does to the session it loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Login: `cycle_key`, then `insert(key, value)`.
    Rotate(&'static str, &'static str),
    /// Logout: `flush`.
    Logout,
    /// `insert(key, value)`.
    Save(&'static str, &'static str),
    /// `update("n", n + 1)`.
    Increment,
}

impl Role {
    fn handle(self, session: &Session) -> Result<()> {
        match self {
            Self::Rotate(key, value) => {
                session.cycle_key();
                session.insert(key, value)?;
            }
            Self::Logout => session.flush(),
            Self::Save(key, value) => {
                session.insert(key, value)?;
            }
            Self::Increment => {
                session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
            }
        }
        Ok(())
    }

    /// Whether the request ends the session it loaded when it succeeds.
    fn ends_the_session(self) -> bool {
        matches!(self, Self::Rotate(..) | Self::Logout)
    }
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    roles: [Role; 2],
    /// Both requests load before either commits.
    loads_together: bool,
}

/// What one schedule came to.
struct Run {
    /// The decisions made: at each, the steps of the blocked requests (by request) and
    /// the index of the one released.
    decisions: Vec<Decision>,
    results: [Result<Commit>; 2],
    log: Vec<Entry>,
    /// `created[i]` is key `K<i>`; `K0` is the session both requests loaded.
    created: Vec<SessionKey>,
    /// What each created key holds at the end.
    slots: Vec<Lookup>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Decision {
    /// The blocked requests and their steps, by request.
    options: Vec<(usize, Step)>,
    chosen: usize,
}

impl Run {
    /// The schedule and the history, for failure messages.
    fn describe(&self, scenario: &Scenario) -> String {
        let mut s = format!(
            "scenario {} (roles {:?}, loads together: {})\nchoices: {:?}\nhistory:\n",
            scenario.name,
            scenario.roles,
            scenario.loads_together,
            self.decisions
                .iter()
                .map(|d| d.options[d.chosen].0)
                .collect::<Vec<_>>()
        );
        for e in &self.log {
            let _ = match e {
                Entry::Call { request, text, .. } => writeln!(s, "  r{request}: {text}"),
                Entry::Returned { request, text } => writeln!(s, "  r{request}: => {text}"),
            };
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let _ = match slot {
                Lookup::Live(r) => writeln!(s, "  K{i}: live v{} {:?}", r.version, r.data),
                other => writeln!(s, "  K{i}: {other:?}"),
            };
        }
        s
    }

    /// The index among the created keys of the key a commit set as cookie, if it set one.
    fn index_of_cookie(&self, commit: &Commit) -> Option<usize> {
        let CookieAction::Set(c) = &commit.cookie else {
            // A save under the key the browser holds (only ever K0 here) writes without
            // sending that key again.
            return (commit.written
                && !commit.writes_dropped
                && commit.cookie == CookieAction::Keep)
                .then_some(0);
        };
        let pair = c.as_str().split(';').next().unwrap_or("");
        let value = pair.split_once('=').map_or("", |(_, v)| v);
        let key = SessionKey::parse(value).expect("a set cookie holds a key");
        Some(
            self.created
                .iter()
                .position(|k| *k == key)
                .expect("a set cookie names a created key"),
        )
    }

    fn live(&self) -> Vec<(usize, &Record)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Lookup::Live(r) => Some((i, r)),
                _ => None,
            })
            .collect()
    }

    /// Where in the history `request`'s commit returned.
    fn returned_at(&self, request: usize) -> Option<usize> {
        self.log
            .iter()
            .position(|e| matches!(e, Entry::Returned { request: r, .. } if *r == request))
    }

    /// Where in the history `request` successfully ended key `K<key>`.
    fn ended_at(&self, request: usize, key: usize) -> Option<usize> {
        self.log.iter().position(|e| {
            matches!(e, Entry::Call { request: r, ended: Some(k), .. } if *r == request && *k == key)
        })
    }
}

fn is_success(c: &Commit) -> bool {
    c.written && !c.writes_dropped
}

fn is_dropped(c: &Commit) -> bool {
    c.cookie == CookieAction::Keep && c.writes_dropped
}

fn commit_text(c: &Result<Commit>) -> String {
    match c {
        Ok(c) => {
            let cookie = match &c.cookie {
                CookieAction::Set(_) => "Set",
                CookieAction::Remove(_) => "Remove",
                CookieAction::Keep => "Keep",
                _ => "other",
            };
            format!("{cookie}, writes_dropped: {}", c.writes_dropped)
        }
        Err(e) => format!("commit failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------

fn config() -> SessionConfig {
    SessionConfig::builder()
        .with_conflict_retries(100)
        .build()
        .expect("a valid configuration")
}

/// One request: load, (barrier), handler, commit.
async fn request(
    manager: SessionManager,
    store: Arc<Gated>,
    events: mpsc::UnboundedSender<Event>,
    cookie: String,
    role: Role,
    loads_together: bool,
) -> Result<Commit> {
    let me = REQUEST.get();
    let lazy = manager.lazy(Some(&cookie));
    let session = lazy.load().await?;
    if loads_together {
        let (resume, resumed) = oneshot::channel();
        events
            .send(Event::Blocked {
                request: me,
                step: Step::Barrier,
                resume,
            })
            .expect("the scheduler listens");
        resumed.await.expect("the scheduler lifts the barrier");
    }
    role.handle(&session)?;
    let commit = manager.commit(&lazy, 200).await;
    store.note_returned(me, commit_text(&commit));
    commit
}

/// Runs `scenario` once, following `choices` at the first decisions and the default
/// (request 0) after them.
async fn run_once(scenario: &Scenario, choices: &[usize]) -> Run {
    let (events, mut inbox) = mpsc::unbounded_channel();
    let store = Arc::new(Gated::new(events.clone()));

    // The session both requests hold, stored by an earlier request (not scheduled).
    let setup = SessionManager::new(store.clone(), config());
    let first = setup.lazy(None);
    let s = first.load().await.expect("load a new session");
    s.insert("user", "ada").expect("insert");
    s.insert("n", 0).expect("insert");
    let commit = setup.commit(&first, 200).await.expect("store the session");
    assert!(matches!(commit.cookie, CookieAction::Set(_)));
    let cookie = store.created()[0].as_str().to_owned();

    let handles: Vec<_> = (0..2)
        .map(|i| {
            // One manager per request: commits of one session in one manager take turns,
            // and the races to explore are those between processes.
            let manager = SessionManager::new(store.clone(), config());
            let guard = FinishGuard {
                request: i,
                events: events.clone(),
            };
            let body = request(
                manager,
                store.clone(),
                events.clone(),
                cookie.clone(),
                scenario.roles[i],
                scenario.loads_together,
            );
            tokio::spawn(REQUEST.scope(i, async move {
                let _guard = guard;
                body.await
            }))
        })
        .collect();

    // The scheduler.
    enum State {
        Running,
        Blocked(Step, oneshot::Sender<()>),
        Finished,
    }
    let mut states = [State::Running, State::Running];
    let mut decisions = Vec::new();
    loop {
        while states.iter().any(|s| matches!(s, State::Running)) {
            match inbox.recv().await.expect("requests report") {
                Event::Blocked {
                    request,
                    step,
                    resume,
                } => states[request] = State::Blocked(step, resume),
                Event::Finished { request } => states[request] = State::Finished,
            }
        }
        let at_store: Vec<(usize, Step)> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                State::Blocked(step @ Step::Store(_), _) => Some((i, step.clone())),
                _ => None,
            })
            .collect();
        let release: Vec<usize> = match at_store.len() {
            0 => {
                // Every request still going waits at the barrier: lift it for all.
                let waiting: Vec<usize> = (0..2)
                    .filter(|&i| matches!(states[i], State::Blocked(Step::Barrier, _)))
                    .collect();
                if waiting.is_empty() {
                    break;
                }
                waiting
            }
            1 => vec![at_store[0].0],
            _ => {
                assert!(
                    decisions.len() < MAX_DECISIONS,
                    "{}: more than {MAX_DECISIONS} decisions in one schedule",
                    scenario.name
                );
                let chosen = choices.get(decisions.len()).copied().unwrap_or(0);
                let request = at_store[chosen].0;
                decisions.push(Decision {
                    options: at_store,
                    chosen,
                });
                vec![request]
            }
        };
        for i in release {
            if let State::Blocked(_, resume) = std::mem::replace(&mut states[i], State::Running) {
                resume.send(()).expect("the request waits for its turn");
            }
        }
    }

    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("a request task does not panic"));
    }
    let results: [Result<Commit>; 2] = results.try_into().expect("two requests");
    let created = store.created();
    let mut slots = Vec::new();
    for k in &created {
        slots.push(store.inner.lookup(k).await.expect("lookup"));
    }
    Run {
        decisions,
        results,
        log: store.log(),
        created,
        slots,
    }
}

// ---------------------------------------------------------------------------------------
// The explorer
// ---------------------------------------------------------------------------------------

/// Explores every schedule of `scenario`, checks each, and returns how many there were.
async fn explore(scenario: Scenario) -> usize {
    let mut choices: Vec<usize> = Vec::new();
    let mut previous: Vec<Decision> = Vec::new();
    let mut count = 0;
    let mut outcomes = BTreeSet::new();
    loop {
        let run = run_once(&scenario, &choices).await;
        count += 1;
        // Replay check: the prefix we asked for met the same decisions as before.
        let replayed = choices.len().saturating_sub(1);
        assert!(
            choices.is_empty()
                || run.decisions.len() >= choices.len()
                    && run.decisions[..replayed] == previous[..replayed]
                    && run.decisions.get(replayed).map(|d| &d.options)
                        == previous.get(replayed).map(|d| &d.options),
            "nondeterministic replay\n{}",
            run.describe(&scenario)
        );
        outcomes.insert(check(&scenario, &run));

        // The odometer: the last decision with an untried option takes its next one.
        let Some(i) = run
            .decisions
            .iter()
            .rposition(|d| d.chosen + 1 < d.options.len())
        else {
            break;
        };
        choices = run.decisions[..i].iter().map(|d| d.chosen).collect();
        choices.push(run.decisions[i].chosen + 1);
        previous = run.decisions;
    }
    assert!(
        count > 1,
        "{}: only one schedule, the explorer proved nothing",
        scenario.name
    );
    let expected = expected_outcomes(&scenario);
    assert_eq!(
        outcomes.iter().copied().collect::<Vec<_>>(),
        expected,
        "{} (loads together: {}): outcomes seen over {count} schedules",
        scenario.name,
        scenario.loads_together
    );
    eprintln!(
        "{} (loads together: {}): {count} schedules, outcomes {outcomes:?}",
        scenario.name, scenario.loads_together
    );
    count
}

/// Every outcome a scenario can have; each must be seen in some schedule.
fn expected_outcomes(scenario: &Scenario) -> Vec<&'static str> {
    let mut v = match scenario.roles {
        [Role::Rotate(..), Role::Logout] => vec!["logout wins", "rotation wins"],
        [Role::Rotate(..), Role::Rotate(..)] => vec!["request 0 rotates", "request 1 rotates"],
        [Role::Save(..), Role::Logout] => vec!["logout drops the save", "save, then logout"],
        [Role::Increment, Role::Increment] => vec!["both counted"],
        [Role::Rotate(..), Role::Save(..)] => vec!["both kept", "rotation drops the save"],
        _ => unreachable!("no such scenario"),
    };
    v.sort_unstable();
    v
}

/// Checks the invariants and the scenario's outcome on one run; returns the outcome.
fn check(scenario: &Scenario, run: &Run) -> &'static str {
    let fail = |what: &str| -> ! { panic!("{what}\n{}", run.describe(scenario)) };
    let roles = scenario.roles;

    // No commit fails.
    let commits: Vec<&Commit> = run
        .results
        .iter()
        .map(|r| match r {
            Ok(c) => c,
            Err(e) => fail(&format!("a commit failed: {e}")),
        })
        .collect();
    for c in &commits {
        if !is_success(c) && !is_dropped(c) {
            fail("a commit neither wrote nor reported its writes dropped");
        }
    }
    let live = run.live();
    let live_with = |key: &str| live.iter().any(|(_, r)| r.data.contains_key(key));

    // At most one live session.
    if live.len() > 1 {
        fail("more than one live session");
    }
    // A successful rotation or logout ended the original key.
    if (0..2).any(|i| roles[i].ends_the_session() && is_success(commits[i]))
        && !matches!(run.slots[0], Lookup::Ended)
    {
        fail("the original session is not ended after a successful rotation or logout");
    }
    // No resurrection.
    let logout_won = (0..2).any(|i| roles[i] == Role::Logout && is_success(commits[i]));
    if logout_won && live_with("user") {
        fail("a live session holds \"user\" after a successful logout");
    }
    for (me, commit) in commits.iter().enumerate() {
        let other = 1 - me;
        let Some(set) = run.index_of_cookie(commit) else {
            continue;
        };
        // A set cookie names a live session, unless a later rotation or logout of the
        // other request ended it (rotation ends the old key by design).
        let returned = run.returned_at(me).expect("the commit returned");
        let ended_later = run
            .ended_at(other, set)
            .is_some_and(|at| at > returned && roles[other].ends_the_session());
        if ended_later {
            if !matches!(run.slots[set], Lookup::Ended) {
                fail("a cookie names a session a later logout or rotation did not end");
            }
        } else if !matches!(run.slots[set], Lookup::Live(_)) {
            fail(&format!(
                "request {me} set a cookie for K{set}, which is not live"
            ));
        }
        // No cookie set after a logout ended the session the request was about.
        if roles[other] == Role::Logout && run.ended_at(other, 0).is_some_and(|at| at < returned) {
            fail(&format!(
                "request {me} set a cookie after the other request's logout ended K0"
            ));
        }
    }

    let set_key = |i: usize| run.index_of_cookie(commits[i]);
    let only_live = |k: Option<usize>| -> &Record {
        match (live.as_slice(), k) {
            ([(i, r)], Some(k)) if *i == k => r,
            _ => fail("the live session is not the one the winning cookie names"),
        }
    };
    match roles {
        [Role::Rotate(key, value), Role::Logout] => {
            match (is_success(commits[0]), is_success(commits[1])) {
                (true, false) if is_dropped(commits[1]) => {
                    let r = only_live(set_key(0));
                    if r.data.get(key) != Some(&json!(value)) || set_key(0) == Some(0) {
                        fail("the rotation did not store its data under a new key");
                    }
                    "rotation wins"
                }
                (false, true) if is_dropped(commits[0]) => {
                    if !matches!(commits[1].cookie, CookieAction::Remove(_)) || !live.is_empty() {
                        fail("a successful logout left a session or kept the cookie");
                    }
                    "logout wins"
                }
                _ => fail("exactly one of a rotation and a logout must win"),
            }
        }
        [Role::Rotate(k0, v0), Role::Rotate(k1, v1)] => {
            let sets: Vec<usize> = (0..2)
                .filter(|&i| matches!(commits[i].cookie, CookieAction::Set(_)))
                .collect();
            let [winner] = sets.as_slice() else {
                fail("two rotations: exactly one response must set a cookie");
            };
            if !is_dropped(commits[1 - winner]) {
                fail("two rotations: the loser must keep the cookie and drop its writes");
            }
            let r = only_live(set_key(*winner));
            let (key, value) = if *winner == 0 { (k0, v0) } else { (k1, v1) };
            if r.data.get(key) != Some(&json!(value)) || r.data.get("user") != Some(&json!("ada")) {
                fail("the winning rotation's data is not what it wrote");
            }
            if *winner == 0 {
                "request 0 rotates"
            } else {
                "request 1 rotates"
            }
        }
        [Role::Save(..), Role::Logout] => {
            if !matches!(commits[1].cookie, CookieAction::Remove(_)) || commits[1].writes_dropped {
                fail("the logout must always succeed against a plain save");
            }
            // No lost write, no resurrection: a save that succeeded came before the
            // logout, which then ended what it saved.
            if !live.is_empty() {
                fail("a session is live after the logout");
            }
            if is_success(commits[0]) {
                "save, then logout"
            } else {
                "logout drops the save"
            }
        }
        [Role::Increment, Role::Increment] => {
            if set_key(0) != Some(0) || set_key(1) != Some(0) {
                fail("both increments must be saved under the original key");
            }
            let r = only_live(Some(0));
            if r.data.get("n") != Some(&json!(2)) {
                fail("a lost update: n is not 2");
            }
            "both counted"
        }
        [Role::Rotate(ka, va), Role::Save(kb, vb)] => {
            if !is_success(commits[0]) || set_key(0) == Some(0) {
                fail("the rotation must always succeed against a plain save");
            }
            let r = only_live(set_key(0));
            if r.data.get(ka) != Some(&json!(va)) {
                fail("the rotation's write is lost");
            }
            let has_b = r.data.get(kb) == Some(&json!(vb));
            if is_success(commits[1]) {
                if set_key(1) != Some(0) || !has_b {
                    fail("a lost write: the save succeeded but the live session lacks it");
                }
                "both kept"
            } else {
                if has_b {
                    fail("a dropped save's write is in the live session");
                }
                "rotation drops the save"
            }
        }
        _ => unreachable!("no such scenario"),
    }
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

async fn both_ways(name: &'static str, roles: [Role; 2]) {
    for loads_together in [true, false] {
        explore(Scenario {
            name,
            roles,
            loads_together,
        })
        .await;
    }
}

#[tokio::test]
async fn login_rotation_vs_logout() {
    both_ways(
        "login vs logout",
        [Role::Rotate("user", "bob"), Role::Logout],
    )
    .await;
}

#[tokio::test]
async fn two_rotations() {
    both_ways(
        "two rotations",
        [Role::Rotate("v", "a"), Role::Rotate("v", "b")],
    )
    .await;
}

#[tokio::test]
async fn save_vs_logout() {
    both_ways("save vs logout", [Role::Save("x", "1"), Role::Logout]).await;
}

#[tokio::test]
async fn two_increments() {
    both_ways("two increments", [Role::Increment, Role::Increment]).await;
}

#[tokio::test]
async fn rotation_vs_save() {
    both_ways(
        "rotation vs save",
        [Role::Rotate("a", "1"), Role::Save("b", "1")],
    )
    .await;
}
