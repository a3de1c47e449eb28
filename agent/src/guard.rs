//! The mass-expiry guard: when a large share of an app's endpoints disappears at once
//! because their registrations *expired* (app hosts cut from etcd, an etcd outage seen
//! only from their side), the agent keeps rendering the last known endpoints of that
//! app for a bounded time instead of emptying it: healthy instances stay in service.
//!
//! Only expiries count. An endpoint deleted while its lease still exists (a drain, an
//! operator's `discoctl endpoint remove`) or one that had no lease was removed on
//! purpose and goes at once. The guard trips when, within `window`, more than `share`
//! of the app's endpoints expired; it then holds every endpoint that expired in the
//! window and any that expire while it holds. A held endpoint is released when it
//! registers again (the registered record replaces it: same address, same render, no
//! reload) or after `hold` (then it is dropped, loudly). Pure: time is a parameter.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use disco::model::Endpoint;
use disco::Snapshot;
use tokio::time::Instant;

/// The guard's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Share of an app's endpoints (0–1) that must expire within `window` to trip the
    /// guard; 1 or more turns it off.
    pub share: f64,
    /// How close together the expiries must be.
    pub window: Duration,
    /// The longest an expired endpoint is kept.
    pub hold: Duration,
}

/// An endpoint slot of an app: (instance, version).
type Slot = (String, String);

#[derive(Debug, Default)]
struct AppGuard {
    /// Recent expiries, oldest first, with the endpoint as it was.
    expiries: Vec<(Instant, Slot, Endpoint)>,
    /// Endpoints kept although their registration expired, and since when.
    held: BTreeMap<Slot, (Endpoint, Instant)>,
}

/// The guard over every app.
#[derive(Debug)]
pub struct Guard {
    settings: Settings,
    apps: BTreeMap<String, AppGuard>,
}

/// What the guard is doing, for status, logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per app with held endpoints.
    pub held: Vec<String>,
    /// Number of held endpoints.
    pub held_count: usize,
    /// Endpoints dropped now because their hold time ran out.
    pub dropped: Vec<String>,
}

impl Guard {
    /// The apps the guard holds endpoints of (their rendered view differs from the
    /// routing state).
    pub fn holding(&self) -> impl Iterator<Item = &String> {
        self.apps
            .iter()
            .filter(|(_, g)| !g.held.is_empty())
            .map(|(app, _)| app)
    }

    pub fn new(settings: Settings) -> Guard {
        Guard {
            settings,
            apps: BTreeMap::new(),
        }
    }

    /// Notes that the registration of `app`'s endpoint (`instance`, `version`), which was
    /// `endpoint`, expired at `now`; `remaining` is how many endpoints the app has left.
    pub fn expired(
        &mut self,
        now: Instant,
        app: &str,
        instance: &str,
        version: &str,
        endpoint: Endpoint,
        remaining: usize,
    ) {
        if self.settings.share >= 1.0 {
            return;
        }
        let window = self.settings.window;
        let guard = self.apps.entry(app.to_string()).or_default();
        let slot = (instance.to_string(), version.to_string());
        guard
            .expiries
            .retain(|(at, _, _)| now.saturating_duration_since(*at) <= window);
        guard.expiries.push((now, slot.clone(), endpoint.clone()));
        if !guard.held.is_empty() {
            guard.held.entry(slot).or_insert((endpoint, now));
            return;
        }
        let expired = guard.expiries.len();
        let share = expired as f64 / (remaining + expired) as f64;
        if share > self.settings.share {
            tracing::warn!(
                app,
                expired,
                of = remaining + expired,
                window = ?window,
                hold = ?self.settings.hold,
                "registrations of most of the app's endpoints expired at once: keeping the last known endpoints"
            );
            for (at, slot, endpoint) in &guard.expiries {
                guard.held.insert(slot.clone(), (endpoint.clone(), *at));
            }
        }
    }

    /// When the next hold runs out, if any endpoint is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.apps
            .values()
            .flat_map(|g| {
                g.held
                    .values()
                    .map(|(_, since)| *since + self.settings.hold)
            })
            .min()
    }

    /// The snapshot to render at `now`: `snapshot` with the held endpoints put back.
    /// Releases the endpoints that registered again and drops those held too long.
    pub fn view<'a>(
        &mut self,
        now: Instant,
        snapshot: &'a Snapshot,
    ) -> (Cow<'a, Snapshot>, Report) {
        let hold = self.settings.hold;
        let mut report = Report::default();
        let mut view = Cow::Borrowed(snapshot);
        for (app, guard) in &mut self.apps {
            guard.held.retain(|(instance, version), (_, since)| {
                let back = snapshot.endpoint(app, instance, version).is_some();
                let over = now.saturating_duration_since(*since) >= hold;
                if over && !back {
                    tracing::warn!(app = %app, instance, version, held_for = ?hold, "dropping an endpoint held since its registration expired");
                    report.dropped.push(format!("{app}/{instance}/{version}"));
                }
                !back && !over
            });
            if guard.held.is_empty() {
                continue;
            }
            let Some(app_state) = view.to_mut().apps.get_mut(app) else {
                continue;
            };
            let mut names = Vec::new();
            for ((instance, version), (endpoint, _)) in &guard.held {
                app_state
                    .endpoints
                    .entry(instance.clone())
                    .or_default()
                    .insert(version.clone(), endpoint.clone());
                names.push(format!("{instance}/{version}"));
            }
            report.held_count += guard.held.len();
            report.held.push(format!(
                "{app}: keeping {} endpoint{} whose registrations expired at once ({}) for at most {} or until they register again",
                guard.held.len(),
                if guard.held.len() == 1 { "" } else { "s" },
                names.join(", "),
                humantime::format_duration(hold),
            ));
        }
        self.apps
            .retain(|_, g| !g.held.is_empty() || !g.expiries.is_empty());
        (view, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use disco::Keyspace;

    const SETTINGS: Settings = Settings {
        share: 0.5,
        window: Duration::from_secs(10),
        hold: Duration::from_secs(60),
    };

    fn endpoint(port: u16) -> Endpoint {
        serde_json::from_str(&format!(r#"{{"address":"127.0.0.1:{port}"}}"#)).unwrap()
    }

    /// app1 with the given instances registered in v1, all routed to v1.
    fn snapshot(instances: &[u16]) -> Snapshot {
        let ks = Keyspace::default();
        let mut kvs = vec![(
            "/disco/apps/app1/policy".to_string(),
            br#"{"listen":"127.0.0.1:8080"}"#.to_vec(),
        )];
        for i in 1..=3u16 {
            kvs.push((
                format!("/disco/apps/app1/routes/instance{i}"),
                b"v1".to_vec(),
            ));
        }
        for &i in instances {
            kvs.push((
                format!("/disco/apps/app1/endpoints/instance{i}/v1"),
                format!(r#"{{"address":"127.0.0.1:{}"}}"#, 9000 + i).into_bytes(),
            ));
        }
        Snapshot::from_kvs(&ks, 10, kvs)
    }

    fn registered(view: &Snapshot) -> Vec<String> {
        view.apps["app1"].endpoints.keys().cloned().collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_expiry_of_three_goes_at_once() {
        let mut guard = Guard::new(SETTINGS);
        let now = Instant::now();
        guard.expired(now, "app1", "instance1", "v1", endpoint(9001), 2);
        let truth = snapshot(&[2, 3]);
        let (view, report) = guard.view(now, &truth);
        assert_eq!(registered(&view), ["instance2", "instance3"]);
        assert_eq!(report, Report::default());
        assert!(matches!(view, Cow::Borrowed(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn most_expiring_together_are_kept_until_they_register_again() {
        let mut guard = Guard::new(SETTINGS);
        let t0 = Instant::now();
        guard.expired(t0, "app1", "instance1", "v1", endpoint(9001), 2);
        tokio::time::advance(Duration::from_secs(3)).await;
        let t1 = Instant::now();
        // 2 of 3 within the window: more than half.
        guard.expired(t1, "app1", "instance2", "v1", endpoint(9002), 1);
        // While it holds, the last one is held too.
        guard.expired(t1, "app1", "instance3", "v1", endpoint(9003), 0);
        let nothing = snapshot(&[]);
        let (view, report) = guard.view(t1, &nothing);
        assert_eq!(registered(&view), ["instance1", "instance2", "instance3"]);
        assert_eq!(report.held_count, 3);
        assert!(
            report.held[0].starts_with("app1: keeping 3 endpoints"),
            "{report:?}"
        );
        assert_eq!(guard.next_deadline(), Some(t0 + SETTINGS.hold));

        // They register again: released, and the view is the truth itself.
        let back = snapshot(&[1, 2, 3]);
        let (view, report) = guard.view(Instant::now(), &back);
        assert!(matches!(view, Cow::Borrowed(_)));
        assert_eq!(report.held_count, 0);
        assert_eq!(guard.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn expiries_far_apart_do_not_trip_it_and_holds_end() {
        let mut guard = Guard::new(SETTINGS);
        guard.expired(Instant::now(), "app1", "instance1", "v1", endpoint(9001), 2);
        tokio::time::advance(Duration::from_secs(11)).await;
        guard.expired(Instant::now(), "app1", "instance2", "v1", endpoint(9002), 1);
        let (_, report) = guard.view(Instant::now(), &snapshot(&[3]));
        assert_eq!(report.held_count, 0, "one per window is not a mass expiry");

        // A lone endpoint that expires is more than half of its app: held, then dropped.
        tokio::time::advance(Duration::from_secs(11)).await;
        guard.expired(Instant::now(), "app1", "instance3", "v1", endpoint(9003), 0);
        let (_, report) = guard.view(Instant::now(), &snapshot(&[]));
        assert_eq!(report.held_count, 1);
        tokio::time::advance(SETTINGS.hold).await;
        let empty = snapshot(&[]);
        let (view, report) = guard.view(Instant::now(), &empty);
        assert_eq!(report.held_count, 0);
        assert_eq!(report.dropped, ["app1/instance3/v1"]);
        assert!(registered(&view).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_of_one_turns_it_off() {
        let mut guard = Guard::new(Settings {
            share: 1.0,
            ..SETTINGS
        });
        guard.expired(Instant::now(), "app1", "instance1", "v1", endpoint(9001), 0);
        let (_, report) = guard.view(Instant::now(), &snapshot(&[]));
        assert_eq!(report.held_count, 0);
    }
}
