//! The routing state resolved for the renderers ([`Resolved`]; not to be confused with
//! `crate::plan`, a discoctl verb's slot flips): what every renderer agrees on, which
//! endpoints take an app's traffic and at which weight, where its dark canary goes, and
//! why anything was left out. Every value is validated again here, so that even a
//! hand-built [`Snapshot`] cannot put configuration syntax into rendered text.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::model::{Endpoint, Match, Mode};
use crate::snapshot::{App, Snapshot};
use crate::validate::{self, Address};

/// Largest HAProxy server weight; weights computed from percentages are scaled to it.
pub(crate) const MAX_WEIGHT: u32 = 256;

/// The routing state of a snapshot, validated and resolved, in app-name order.
pub(crate) struct Resolved<'a> {
    /// Apps that passed validation.
    pub apps: Vec<ResolvedApp<'a>>,
    /// Apps left out entirely (invalid name or policy), with the reason.
    pub warnings: Vec<String>,
}

/// One app, resolved.
pub(crate) struct ResolvedApp<'a> {
    pub name: &'a str,
    /// The frontend address; none when the policy has no `listen` (or there is no policy).
    pub listen: Option<Address>,
    pub mode: Mode,
    /// The policy's traffic shares per version (empty without a policy).
    pub percent: &'a BTreeMap<String, u32>,
    /// Every routed slot, routable or not, in slot order.
    pub slots: Vec<ResolvedSlot<'a>>,
    /// The servers of the routed backend: the endpoints of routable slots.
    pub routed: Backend<'a>,
    /// The dark canary, when it has at least one healthy endpoint.
    pub dark: Option<ResolvedDark<'a>>,
    /// Every valid registered endpoint, routed or not, in slot then version order.
    pub registered: Vec<Server<'a>>,
    /// How the registered endpoints are checked together (HAProxy renders every one of
    /// them in each backend, taking traffic or not).
    pub checked: Backend<'a>,
    /// Slots left out, shares that went elsewhere, a dark canary without endpoints.
    pub warnings: Vec<String>,
}

/// A routed slot and, when it cannot take traffic, why.
pub(crate) struct ResolvedSlot<'a> {
    pub instance: &'a str,
    pub version: &'a str,
    /// The endpoint, when one is registered and valid.
    pub server: Option<Server<'a>>,
    pub unroutable: Option<&'static str>,
}

/// One endpoint as a proxy server.
#[derive(Clone)]
pub(crate) struct Server<'a> {
    pub instance: &'a str,
    pub version: &'a str,
    pub address: Address,
    pub endpoint: &'a Endpoint,
    /// The weight to render, 0–256: the endpoint's own weight, or its share of the
    /// policy's percentages scaled by [`split_weights`]. 0 takes no new traffic.
    pub weight: u32,
}

/// The servers of one backend and how they are checked.
pub(crate) struct Backend<'a> {
    pub servers: Vec<Server<'a>>,
    /// The HTTP health-check path, when every server has the same one; none means a TCP
    /// check.
    pub health_path: Option<&'a str>,
    /// The different health paths ("none" for a server without one), when the servers
    /// disagree: a proxy that checks per backend (HAProxy) falls back to TCP checks.
    pub mixed_health_paths: Option<String>,
}

impl Backend<'_> {
    /// True when at least one server takes new traffic.
    pub fn takes_traffic(&self) -> bool {
        self.servers.iter().any(|s| s.weight > 0)
    }
}

/// Where a dark canary sends matching requests.
pub(crate) struct ResolvedDark<'a> {
    pub version: &'a str,
    pub matches: Vec<DarkMatch<'a>>,
    /// Every healthy registered endpoint of the dark version.
    pub backend: Backend<'a>,
}

/// One validated dark-canary match.
pub(crate) enum DarkMatch<'a> {
    Header {
        name: &'a str,
        value: &'a str,
    },
    Cookie {
        name: &'a str,
        value: &'a str,
    },
    /// A network, normalised to `address/length` with the host bits cleared.
    Network(String),
}

/// The warning for an app whose policy has no listen address.
pub(crate) fn no_listen(app: &str) -> String {
    format!("{app}: the policy has no listen address: not rendered")
}

/// The listen addresses taken so far in one file: the first app to claim one gets it.
#[derive(Default)]
pub(crate) struct Listeners<'a> {
    taken: HashMap<&'a Address, &'a str>,
}

impl<'a> Listeners<'a> {
    /// Gives `listen` to `app` unless an earlier app has it (then says so in `warnings`).
    pub fn claim(&mut self, app: &'a str, listen: &'a Address, warnings: &mut Vec<String>) -> bool {
        if let Some(first) = self.taken.get(listen) {
            warnings.push(format!(
                "{app}: listen address {listen} is already used by {first}: not rendered"
            ));
            return false;
        }
        self.taken.insert(listen, app);
        true
    }
}

/// The apps a proxy renders, with their listen address: those that have one, that
/// `skip` does not refuse, and whose address no earlier app took. Every app left out
/// gets a warning; every app rendered brings its own warnings along.
pub(crate) fn rendered_apps<'p, 'a>(
    apps: &'p [ResolvedApp<'a>],
    warnings: &mut Vec<String>,
    skip: impl Fn(&ResolvedApp<'a>) -> Option<String>,
) -> Vec<(&'p ResolvedApp<'a>, &'p Address)> {
    let mut listeners = Listeners::default();
    let mut rendered = Vec::new();
    for app in apps {
        let Some(listen) = &app.listen else {
            warnings.push(no_listen(app.name));
            continue;
        };
        if let Some(reason) = skip(app) {
            warnings.push(reason);
            continue;
        }
        if !listeners.claim(app.name, listen, warnings) {
            continue;
        }
        warnings.extend(app.warnings.iter().cloned());
        rendered.push((app, listen));
    }
    rendered
}

/// Resolves and validates a whole snapshot.
pub(crate) fn resolve(snapshot: &Snapshot) -> Resolved<'_> {
    let mut plan = Resolved {
        apps: Vec::new(),
        warnings: Vec::new(),
    };
    for (name, app) in &snapshot.apps {
        match resolve_app(name, app) {
            Ok(app) => plan.apps.push(app),
            Err(reason) => plan
                .warnings
                .push(format!("app {name:?} left out: {reason}")),
        }
    }
    plan
}

pub(crate) fn resolve_app<'a>(name: &'a str, app: &'a App) -> Result<ResolvedApp<'a>, String> {
    static NO_PERCENT: BTreeMap<String, u32> = BTreeMap::new();
    validate::name("app name", name).map_err(|e| e.to_string())?;
    let mut listen = None;
    let mut mode = Mode::Http;
    let mut percent = &NO_PERCENT;
    if let Some(policy) = &app.policy {
        policy
            .validate()
            .map_err(|e| format!("invalid policy: {e}"))?;
        listen = policy
            .listen
            .as_deref()
            .map(validate::listen_address)
            .transpose()
            .map_err(|e| e.to_string())?;
        mode = policy.mode;
        percent = &policy.weights;
    }
    let mut warnings = Vec::new();

    // Every registered endpoint, validated once.
    let mut registered = Vec::new();
    for (instance, by_version) in &app.endpoints {
        for (version, endpoint) in by_version {
            match valid_server(instance, version, endpoint) {
                Ok(server) => registered.push(server),
                Err(e) => warnings.push(format!(
                    "{name}/{instance:?}/{version:?}: invalid endpoint left out: {e}"
                )),
            }
        }
    }
    let find = |instance: &str, version: &str| {
        registered
            .iter()
            .find(|s| s.instance == instance && s.version == version)
            .cloned()
    };

    let mut slots = Vec::new();
    for slot in app.slots() {
        if let Err(e) = validate::name("instance name", slot.instance)
            .and_then(|()| validate::name("version name", slot.version))
        {
            warnings.push(format!("{name}: invalid route left out: {e}"));
            continue;
        }
        let server = find(slot.instance, slot.version);
        let unroutable = match (&server, slot.endpoint) {
            (None, Some(_)) => Some("its endpoint record is invalid"),
            _ => slot.unroutable_reason(),
        };
        if let Some(reason) = unroutable {
            warnings.push(format!(
                "{name}/{} routes to {}: {reason}; left out",
                slot.instance, slot.version
            ));
        }
        slots.push(ResolvedSlot {
            instance: slot.instance,
            version: slot.version,
            server,
            unroutable,
        });
    }

    let mut servers: Vec<Server> = slots
        .iter()
        .filter(|s| s.unroutable.is_none())
        .filter_map(|s| s.server.clone())
        .collect();
    let shares: Vec<(&str, u32)> = servers
        .iter()
        .map(|s| (s.version, s.endpoint.weight))
        .collect();
    for (server, weight) in servers.iter_mut().zip(split_weights(percent, &shares)) {
        server.weight = weight;
    }
    for (version, p) in percent {
        if *p > 0 && !servers.iter().any(|s| s.version == version) {
            warnings.push(format!(
                "{name}: weights give {version} {p}% but no routable slot serves it; the other versions share its traffic"
            ));
        }
    }
    if !servers.is_empty() && servers.iter().all(|s| s.weight == 0) {
        warnings.push(format!(
            "{name}: every routed version has weight 0%: no traffic is served"
        ));
    }
    let routed = backend(servers);

    let dark = match app.policy.as_ref().and_then(|p| p.dark.as_ref()) {
        None => None,
        Some(dark) => {
            let servers: Vec<Server> = registered
                .iter()
                .filter(|s| s.version == dark.version && s.endpoint.is_healthy())
                .cloned()
                .collect();
            if servers.is_empty() {
                warnings.push(format!(
                    "{name}: dark canary version {} has no healthy endpoint: no dark routing rendered",
                    dark.version
                ));
                None
            } else {
                let matches = dark.matches.iter().map(dark_match).collect();
                Some(ResolvedDark {
                    version: &dark.version,
                    matches,
                    backend: backend(servers),
                })
            }
        }
    };

    Ok(ResolvedApp {
        name,
        listen,
        mode,
        percent,
        slots,
        routed,
        dark,
        checked: backend(registered.clone()),
        registered,
        warnings,
    })
}

fn valid_server<'a>(
    instance: &'a str,
    version: &'a str,
    endpoint: &'a Endpoint,
) -> Result<Server<'a>, validate::Invalid> {
    validate::name("instance name", instance)?;
    validate::name("version name", version)?;
    endpoint.validate()?;
    Ok(Server {
        instance,
        version,
        address: validate::address(&endpoint.address)?,
        endpoint,
        weight: endpoint.weight,
    })
}

/// A backend of `servers`, HTTP-checked when they all share one health path.
fn backend(servers: Vec<Server<'_>>) -> Backend<'_> {
    let mut paths: Vec<Option<&str>> = servers
        .iter()
        .map(|s| s.endpoint.health_path.as_deref())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let (health_path, mixed_health_paths) = match paths.as_slice() {
        [] => (None, None),
        [one] => (*one, None),
        several => {
            let list: Vec<&str> = several.iter().map(|p| p.unwrap_or("none")).collect();
            (None, Some(list.join(", ")))
        }
    };
    Backend {
        servers,
        health_path,
        mixed_health_paths,
    }
}

/// A validated match, networks normalised. The policy was validated, so the network
/// parses; should it not, the match degrades to the single host 0.0.0.0/32, which never
/// matches a real client.
fn dark_match(m: &Match) -> DarkMatch<'_> {
    match m {
        Match::Header { name, value } => DarkMatch::Header { name, value },
        Match::Cookie { name, value } => DarkMatch::Cookie { name, value },
        Match::Cidr(net) => DarkMatch::Network(match validate::cidr(net) {
            Ok((ip, len)) => network(ip, len),
            Err(_) => "0.0.0.0/32".to_string(),
        }),
    }
}

/// `ip/len` with the host bits cleared.
fn network(ip: std::net::IpAddr, len: u8) -> String {
    use std::net::IpAddr;
    let masked = match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    format!("{masked}/{len}")
}

/// Server weights (0–256) for servers given as `(version, endpoint weight)`.
///
/// Without `percent`, each server keeps its endpoint weight (clamped to 1–256).
///
/// With `percent` (version → share of the traffic, summing to at most 100):
/// - Only versions that have a server count. A listed version gets its percentage; the
///   unlisted ones share what is left (100 minus the listed ones) equally. When every
///   version present is listed and the shares add up to less than 100, they keep their
///   proportions (nobody else can take the rest).
/// - A version's share is divided among its servers in proportion to their endpoint
///   weights.
/// - Shares are scaled so that the largest server gets 256, then rounded to the nearest
///   integer (halves up); a share above 0 never rounds below 1, so a version with a
///   non-zero percentage always gets some traffic. A 0% share gives weight 0.
///
/// The arithmetic is exact (integer fractions), so the result does not depend on
/// floating-point rounding.
pub(crate) fn split_weights(percent: &BTreeMap<String, u32>, servers: &[(&str, u32)]) -> Vec<u32> {
    if percent.is_empty() {
        return servers
            .iter()
            .map(|(_, w)| (*w).clamp(1, MAX_WEIGHT))
            .collect();
    }
    let mut versions: BTreeMap<&str, u128> = BTreeMap::new(); // version → Σ endpoint weights
    for (version, weight) in servers {
        *versions.entry(version).or_default() += u128::from(*weight);
    }
    let listed: u128 = versions
        .keys()
        .filter_map(|v| percent.get(*v))
        .map(|p| u128::from(*p))
        .sum();
    let unlisted = versions
        .keys()
        .filter(|v| !percent.contains_key(**v))
        .count() as u128;
    let remainder = 100u128.saturating_sub(listed);
    // A version's share, times `unlisted` (or 1) so that it stays an integer.
    let scale = unlisted.max(1);
    let version_share = |v: &str| match percent.get(v) {
        Some(p) => u128::from(*p) * scale,
        None => remainder,
    };
    // Each server's share as the fraction numerator / denominator.
    let fractions: Vec<(u128, u128)> = servers
        .iter()
        .map(|(v, w)| (version_share(v) * u128::from(*w), versions[v].max(1)))
        .collect();
    let Some(&(max_num, max_den)) = fractions
        .iter()
        .max_by(|(a, b), (c, d)| (a * d).cmp(&(c * b)))
    else {
        return Vec::new();
    };
    fractions
        .iter()
        .map(|&(num, den)| {
            if num == 0 || max_num == 0 {
                return 0;
            }
            // round(256 · (num/den) / (max_num/max_den)), halves up.
            let n = u128::from(MAX_WEIGHT) * num * max_den;
            let d = den * max_num;
            let rounded = (2 * n + d) / (2 * d);
            u32::try_from(rounded)
                .unwrap_or(MAX_WEIGHT)
                .clamp(1, MAX_WEIGHT)
        })
        .collect()
}

/// A duration as HAProxy and nginx both read it: whole seconds as `30s`, else `1500ms`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms > 0 && ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyspace;

    fn percent(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(v, p)| (v.to_string(), *p)).collect()
    }

    #[test]
    fn without_percentages_servers_keep_their_endpoint_weight() {
        assert_eq!(
            split_weights(&percent(&[]), &[("v1", 100), ("v1", 256), ("v2", 1)]),
            [100, 256, 1]
        );
    }

    #[test]
    fn a_listed_version_gets_its_share_and_the_rest_goes_to_the_others() {
        // v1: 95% over three servers (31.67% each, the largest → 256);
        // v2: 5% on one server → 256 · 5 / 31.67 = 40.4 → 40. 40 / (3·256 + 40) = 4.95%.
        let w = split_weights(
            &percent(&[("v2", 5)]),
            &[("v1", 100), ("v1", 100), ("v1", 100), ("v2", 100)],
        );
        assert_eq!(w, [256, 256, 256, 40]);
    }

    #[test]
    fn a_share_is_split_by_endpoint_weight() {
        // v1 50% on one server; v2 50% over weights 100 and 300: 12.5% and 37.5%.
        let w = split_weights(
            &percent(&[("v2", 50)]),
            &[("v1", 100), ("v2", 100), ("v2", 300)],
        );
        assert_eq!(w, [256, 64, 192]);
    }

    #[test]
    fn unlisted_versions_share_the_remainder_equally() {
        // v1 40%, v2 and v3 30% each: 256, 192, 192.
        let w = split_weights(
            &percent(&[("v1", 40)]),
            &[("v1", 7), ("v2", 100), ("v3", 1)],
        );
        assert_eq!(w, [256, 192, 192]);
        // Everything listed: the remainder goes nowhere, the proportions stay.
        let w = split_weights(
            &percent(&[("v1", 10), ("v2", 30)]),
            &[("v1", 100), ("v2", 100)],
        );
        assert_eq!(w, [85, 256]); // 256 / 3 = 85.33
                                  // Listed at 100 with an unlisted version present: it gets nothing.
        let w = split_weights(&percent(&[("v2", 100)]), &[("v1", 100), ("v2", 100)]);
        assert_eq!(w, [0, 256]);
    }

    #[test]
    fn rounding_halves_up_and_never_drops_a_nonzero_share() {
        // v1 50% on one server (the largest → 256); v2 50% over endpoint weights
        // 256 + 255 + 1: 128, 127.5 → 128 (halves up), 0.5 → 1.
        let w = split_weights(
            &percent(&[("v1", 50)]),
            &[("v1", 1), ("v2", 256), ("v2", 255), ("v2", 1)],
        );
        assert_eq!(w, [256, 128, 128, 1]);
        let w = split_weights(
            &percent(&[("v2", 1)]),
            &[("v1", 256), ("v1", 256), ("v2", 1), ("v2", 1)],
        );
        // v1: 99% / 2 = 49.5% each; v2: 0.5% each → 256 · 0.5 / 49.5 = 2.59 → 3.
        assert_eq!(w, [256, 256, 3, 3]);
        // Tiny but non-zero shares get 1: 1% over ten servers against 99% on one.
        let mut servers = vec![("v1", 100)];
        servers.extend(std::iter::repeat_n(("v2", 100), 10));
        let w = split_weights(&percent(&[("v2", 1)]), &servers);
        assert_eq!(w[0], 256);
        assert!(w[1..].iter().all(|w| *w == 1), "{w:?}");
    }

    #[test]
    fn zero_percent_gives_weight_zero() {
        assert_eq!(
            split_weights(&percent(&[("v1", 0)]), &[("v1", 100), ("v1", 5)]),
            [0, 0]
        );
        assert_eq!(
            split_weights(&percent(&[("v2", 0)]), &[("v1", 100), ("v2", 5)]),
            [256, 0]
        );
        assert!(split_weights(&percent(&[("v2", 0)]), &[]).is_empty());
    }

    #[test]
    fn networks_are_normalised() {
        let n = |s: &str| {
            let (ip, len) = validate::cidr(s).unwrap();
            network(ip, len)
        };
        assert_eq!(n("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(n("10.1.2.3"), "10.1.2.3/32");
        assert_eq!(n("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(n("fd00::1/8"), "fd00::/8");
        assert_eq!(n("::1"), "::1/128");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_secs(30)), "30s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn a_hand_built_snapshot_cannot_smuggle_invalid_values() {
        let mut snapshot = Snapshot::from_kvs(
            &Keyspace::default(),
            1,
            [
                ("/disco/apps/app1/policy", r#"{"listen":"127.0.0.1:8080"}"#),
                ("/disco/apps/app1/routes/i1", "v1"),
                (
                    "/disco/apps/app1/endpoints/i1/v1",
                    r#"{"address":"127.0.0.1:9001"}"#,
                ),
            ],
        );
        let mut app = snapshot.apps["app1"].clone();
        app.routes.insert("i2\nserver".into(), "v1".into());
        app.routes.insert("i3".into(), "v1".into());
        let mut evil = Endpoint::new("127.0.0.1:9003\n    server evil 6.6.6.6:80");
        evil.health_path = Some("/h }".into());
        app.endpoints
            .entry("i3".into())
            .or_default()
            .insert("v1".into(), evil);
        snapshot.apps.insert("app1".into(), app.clone());
        snapshot.apps.insert("evil }\n".into(), app);

        let plan = resolve(&snapshot);
        assert_eq!(plan.apps.len(), 1);
        assert!(plan.warnings[0].contains("app name"), "{:?}", plan.warnings);
        let app = &plan.apps[0];
        let routed: Vec<&str> = app.routed.servers.iter().map(|s| s.instance).collect();
        assert_eq!(routed, ["i1"]);
        assert_eq!(app.registered.len(), 1);
        assert!(
            app.warnings.iter().any(|w| w.contains("invalid route")),
            "{:?}",
            app.warnings
        );
        assert!(
            app.warnings
                .iter()
                .any(|w| w.contains("i3 routes to v1: its endpoint record is invalid")),
            "{:?}",
            app.warnings
        );
    }
}
