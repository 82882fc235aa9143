//! Sign-in: the credentials an `Authorization` header carries and the throttle of failed
//! sign-ins (per account name and per address).

use super::*;

/// What an `Authorization` header carries, parsed but not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer <secret>`.
    Bearer(String),
    /// `Basic base64(name:password)`.
    Basic {
        /// Account name as sent.
        name: String,
        /// Password as sent.
        password: String,
    },
    /// Anything else (unknown scheme, bad base64, no colon, not UTF-8).
    Malformed,
}

impl fmt::Debug for Credentials {
    // Not derived: never print a secret or a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Bearer(s) => write!(f, "Bearer(token {:?})", token_id(s)),
            Credentials::Basic { name, .. } => write!(f, "Basic({name:?})"),
            Credentials::Malformed => f.write_str("Malformed"),
        }
    }
}

impl Credentials {
    /// Parses an `Authorization` header value; the scheme is matched ignoring case (RFC 9110)
    /// and `Basic` carries base64 of `name:password` (the password may itself contain `:`).
    pub fn parse(value: &str) -> Self {
        let Some((scheme, rest)) = value.trim().split_once(' ') else {
            return Credentials::Malformed;
        };
        let credentials = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            Credentials::Bearer(credentials.to_owned())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(credentials)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((name, password)) => Credentials::Basic {
                    name: name.to_owned(),
                    password: password.to_owned(),
                },
                None => Credentials::Malformed,
            }
        } else {
            Credentials::Malformed
        }
    }

    /// Who the credentials claim to be, for the audit trail of a failed sign-in: the account
    /// name as typed (at most [`MAX_NAME_LEN`] characters, then `...`), `token:<id>` for a
    /// well-formed token, or `unknown`. Never a password or a secret.
    pub fn claimed(&self) -> String {
        match self {
            Credentials::Basic { name, .. } => bounded(name, MAX_NAME_LEN),
            Credentials::Bearer(secret) => {
                token_id(secret).map_or_else(|| "unknown".to_owned(), |id| format!("token:{id}"))
            }
            Credentials::Malformed => "unknown".to_owned(),
        }
    }

    /// The throttle key of the account named (Basic only): the name as typed, bounded, so that
    /// unknown names are counted exactly as known ones.
    pub fn account_key(&self) -> Option<String> {
        match self {
            Credentials::Basic { name, .. } => {
                Some(format!("account:{}", bounded(name, MAX_NAME_LEN + 1)))
            }
            _ => None,
        }
    }

    /// `basic`, `bearer` or `malformed`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Credentials::Bearer(_) => "bearer",
            Credentials::Basic { .. } => "basic",
            Credentials::Malformed => "malformed",
        }
    }
}

/// `s` cut to `max` characters (with `...` when cut).
pub(super) fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push_str("...");
        out
    }
}

/// Counts failed sign-ins per key (an account name as typed, or an address) in a sliding
/// window, and refuses a key that has had too many. Memory is bounded: at most
/// `MAX_THROTTLE_KEYS` keys, each with at most `limit` instants.
#[derive(Debug)]
pub struct SignInThrottle {
    limit: usize,
    window: std::time::Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SignInThrottle {
    /// At most `limit` failures per key within `window`.
    pub fn new(limit: usize, window: std::time::Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when every key may try now; else how long until one of them may.
    pub fn blocked(&self, keys: &[String]) -> Option<std::time::Duration> {
        self.blocked_at(keys, Instant::now())
    }

    /// [`SignInThrottle::blocked`] as of `now`.
    pub fn blocked_at(&self, keys: &[String], now: Instant) -> Option<std::time::Duration> {
        let mut map = self.lock();
        let mut wait: Option<std::time::Duration> = None;
        for key in keys {
            let Some(times) = map.get_mut(key) else {
                continue;
            };
            prune(times, now, self.window);
            if times.len() >= self.limit
                && let Some(oldest) = times.front()
            {
                let left = (*oldest + self.window).saturating_duration_since(now);
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        wait
    }

    /// Counts one failure against every key; returns whether any key is now blocked.
    pub fn fail(&self, keys: &[String]) -> bool {
        self.fail_at(keys, Instant::now())
    }

    /// [`SignInThrottle::fail`] as of `now`.
    pub fn fail_at(&self, keys: &[String], now: Instant) -> bool {
        let mut map = self.lock();
        if map.len() + keys.len() > MAX_THROTTLE_KEYS {
            map.retain(|_, times| {
                prune(times, now, self.window);
                !times.is_empty()
            });
            // Still full of live keys: forget the ones with the fewest failures first.
            while map.len() + keys.len() > MAX_THROTTLE_KEYS {
                let Some(victim) = map
                    .iter()
                    .min_by_key(|(_, t)| t.len())
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&victim);
            }
        }
        let mut blocked = false;
        for key in keys {
            let times = map.entry(key.clone()).or_default();
            prune(times, now, self.window);
            times.push_back(now);
            while times.len() > self.limit {
                times.pop_front();
            }
            blocked |= times.len() >= self.limit;
        }
        blocked
    }

    /// Forgets the failures of `key` (an account that has just signed in).
    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) fn prune(times: &mut VecDeque<Instant>, now: Instant, window: std::time::Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

/// The throttle key of a peer address: the IP for IPv4, the /64 prefix for IPv6 (one host
/// usually holds a whole /64).
pub fn address_key(addr: std::net::IpAddr) -> String {
    match addr {
        std::net::IpAddr::V4(v4) => format!("address:{v4}"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("address:{v4}"),
            None => {
                let s = v6.segments();
                format!("address:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}
