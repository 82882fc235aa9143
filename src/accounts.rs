//! Accounts, roles and API tokens: who may call the service and what each caller may do.
//!
//! Owns `<data-dir>/accounts.json`, which holds every account (name, role, argon2id password
//! hash, whether it is disabled) and every API token (id, owner, label, SHA-256 of the secret,
//! lifetime, revocation). It does not parse HTTP requests beyond one `Authorization` header
//! value, and it does not decide which route needs which [`Permission`]: the HTTP layer does.
//!
//! # Roles
//!
//! | permission       | searcher | curator | auditor | admin |
//! |------------------|:--------:|:-------:|:-------:|:-----:|
//! | `search`         |    x     |    x    |         |   x   |
//! | `view_record`    |    x     |    x    |    x    |   x   |
//! | `view_unredacted`|          |         |    x    |   x   |
//! | `lookup`         |          |         |    x    |   x   |
//! | `collections`    |          |    x    |         |   x   |
//! | `export`         |          |    x    |         |   x   |
//! | `read_audit`     |          |         |    x    |   x   |
//! | `manage_accounts`|          |         |         |   x   |
//! | `retention`      |          |         |         |   x   |
//! | `delete`         |          |         |         |   x   |
//!
//! Auditors investigate what was disclosed (look-ups, the audit trail, unredacted images); they
//! do not browse the library by search.
//!
//! # Invariants
//!
//! - Passwords are stored only as argon2id PHC strings (crate default parameters, random salt);
//!   token secrets only as the hex SHA-256 of the secret. Neither a password, a secret nor a
//!   hash leaves this module: [`AccountInfo`], [`TokenInfo`] and `Debug` leave them out.
//! - Authentication failures that would tell a caller whether a name or token exists all read
//!   [`AccountError::BadCredentials`]; an unknown name still costs one argon2 verification.
//! - At least one enabled admin stays once there has been one ([`AccountError::LastAdmin`]).
//! - The file is written atomically after every change, under one lock: each change is made on
//!   a copy, written, then swapped in, so a failed write changes nothing in memory. On Unix the
//!   file is readable by its owner only (0600).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use indexer::Fault;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

/// Longest account or token name.
pub const MAX_NAME_LEN: usize = 64;

/// Shortest password, in characters.
pub const MIN_PASSWORD_LEN: usize = 12;

/// What every token secret starts with, so leaked secrets are recognisable (as GitHub's `ghp_`).
const TOKEN_PREFIX: &str = "il_";

/// Hex characters of a token id (6 random bytes).
const TOKEN_ID_LEN: usize = 12;

/// Verified instead of a real hash when the account does not exist, so a failed log-in takes as
/// long whether or not the name exists. Made with `Argon2::default()` (argon2id, m=19456, t=2,
/// p=1, the same cost as real hashes: a test checks it) from a password no account can have
/// (a fixed salt, so the hash is not any account's).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$aW1hZ2VsZW5zLWR1bW15IQ$LMpGN9IYQ0WivPLu60j4PGmKyNl5PYZLZgSYOpGlbI8";

/// What an account may do. See the module documentation for the table.
///
/// The derived order is declaration order, for stable sorting only: it is not a hierarchy
/// (an auditor cannot search, a curator cannot read the audit trail).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Searches the library and views (redacted) records.
    Searcher,
    /// A searcher who also curates collections and exports data sets.
    Curator,
    /// Investigates disclosures: look-ups, the audit trail, unredacted images. No search.
    Auditor,
    /// Everything, including accounts, retention and deletion.
    Admin,
}

impl Role {
    /// Every role, least to most privileged where that is defined.
    pub const ALL: [Role; 4] = [Role::Searcher, Role::Curator, Role::Auditor, Role::Admin];

    /// Whether this role grants `p` (the table in the module documentation).
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Searcher => matches!(p, P::Search | P::ViewRecord),
            Role::Curator => matches!(p, P::Search | P::ViewRecord | P::Collections | P::Export),
            Role::Auditor => matches!(
                p,
                P::Lookup | P::ReadAudit | P::ViewRecord | P::ViewUnredacted
            ),
            Role::Admin => true,
        }
    }

    /// The lowercase name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Searcher => "searcher",
            Role::Curator => "curator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use searcher, curator, auditor or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses a role name, ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// One thing a route may require. Which roles grant which: [`Role::allows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Search, facets, library info.
    Search,
    /// A record, its image, its thumbnail (with sensitive boxes blurred).
    ViewRecord,
    /// Images and thumbnails without blurring of sensitive boxes.
    ViewUnredacted,
    /// Look-ups by filename or date.
    Lookup,
    /// Create, edit and list collections.
    Collections,
    /// Data-set export.
    Export,
    /// Query and verify the audit trail.
    ReadAudit,
    /// Accounts and tokens of others.
    ManageAccounts,
    /// Retention schedules, legal holds, retention runs.
    Retention,
    /// Delete records.
    Delete,
}

impl Permission {
    /// Every permission, in declaration order.
    pub const ALL: [Permission; 10] = [
        Permission::Search,
        Permission::ViewRecord,
        Permission::ViewUnredacted,
        Permission::Lookup,
        Permission::Collections,
        Permission::Export,
        Permission::ReadAudit,
        Permission::ManageAccounts,
        Permission::Retention,
        Permission::Delete,
    ];
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Account name.
    pub account: String,
    /// The account's role at the time of authentication.
    pub role: Role,
    /// Token id when authenticated by token; `None` for a password.
    pub token: Option<String>,
}

impl Principal {
    /// Whether the caller's role grants `p`.
    pub fn can(&self, p: Permission) -> bool {
        self.role.allows(p)
    }
}

/// An account as shown to callers: never its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountInfo {
    /// Name: 1 to 64 of letters, digits, `.`, `_`, `@`, `-`.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Whether it is disabled (no password or token of it authenticates).
    pub disabled: bool,
}

/// A token as shown to callers: never its secret nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Id: 12 hex characters, also embedded in the secret.
    pub id: String,
    /// Account it authenticates as.
    pub account: String,
    /// Label given at issue (same character rules as account names).
    pub name: String,
    /// When it was issued.
    pub created: DateTime<Utc>,
    /// When it stops working.
    pub expires: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked: Option<DateTime<Utc>>,
}

/// Why an account operation or an authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown account, wrong password, unknown or tampered token, unreadable header: one
    /// message for all, so callers cannot tell which names or tokens exist.
    #[error("invalid credentials")]
    BadCredentials,
    /// The token is past its expiry.
    #[error("token expired")]
    Expired,
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
    /// The account is disabled (given only once the password or token itself was right).
    #[error("account disabled")]
    Disabled,
    /// The account or token name is not allowed.
    #[error(
        "name {0:?} is not valid: use 1 to {MAX_NAME_LEN} letters, digits, '.', '_', '@' or '-'"
    )]
    InvalidName(String),
    /// The password is too short; the text says by how much (never the password).
    #[error("password too weak: {0}")]
    WeakPassword(String),
    /// An account with that name exists.
    #[error("an account named {0:?} already exists")]
    Exists(String),
    /// No account with that name (account operations) or no token with that id
    /// ([`Accounts::revoke_token`]).
    #[error("no account or token {0:?}")]
    NotFound(String),
    /// The change would leave no enabled admin.
    #[error("refused: this is the last enabled admin account")]
    LastAdmin,
    /// The token lifetime is out of range; the text gives the lifetime asked for.
    #[error("token lifetime of {0} is not valid: use 1 minute to 366 days")]
    InvalidTtl(String),
    /// The accounts file cannot be read or written.
    #[error(transparent)]
    Store(#[from] indexer::Error),
}

impl AccountError {
    /// Whose fault it is: everything but a file failure is the caller's.
    pub fn fault(&self) -> Fault {
        match self {
            AccountError::Store(e) => e.fault(),
            _ => Fault::User,
        }
    }

    /// Whether this is an authentication failure (HTTP 401) rather than a refused operation.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AccountError::BadCredentials
                | AccountError::Expired
                | AccountError::Revoked
                | AccountError::Disabled
        )
    }
}

/// What `accounts.json` holds.
#[derive(Clone, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    accounts: BTreeMap<String, StoredAccount>,
    /// By token id.
    #[serde(default)]
    tokens: BTreeMap<String, StoredToken>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredAccount {
    role: Role,
    /// argon2 PHC string.
    password_hash: String,
    created: DateTime<Utc>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredToken {
    account: String,
    name: String,
    /// Hex SHA-256 of the whole secret.
    secret_sha256: String,
    created: DateTime<Utc>,
    expires: DateTime<Utc>,
    #[serde(default)]
    revoked: Option<DateTime<Utc>>,
}

impl State {
    fn enabled_admins(&self) -> usize {
        self.accounts
            .values()
            .filter(|a| a.role == Role::Admin && !a.disabled)
            .count()
    }

    fn info(&self, name: &str) -> Result<AccountInfo, AccountError> {
        self.accounts
            .get(name)
            .map(|a| account_info(name, a))
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))
    }

    /// Checks what [`Accounts::open`] relies on afterwards: hashes parse, tokens have owners.
    fn check(&self) -> Result<(), String> {
        for (name, a) in &self.accounts {
            PasswordHash::new(&a.password_hash)
                .map_err(|e| format!("account {name:?} has an unreadable password hash: {e}"))?;
        }
        for (id, t) in &self.tokens {
            if !self.accounts.contains_key(&t.account) {
                return Err(format!(
                    "token {id:?} belongs to unknown account {:?}",
                    t.account
                ));
            }
            if decode_digest(&t.secret_sha256).is_none() {
                return Err(format!("token {id:?} has an unreadable secret hash"));
            }
        }
        Ok(())
    }
}

/// The accounts and tokens of one service.
pub struct Accounts {
    path: PathBuf,
    inner: Mutex<State>,
}

impl fmt::Debug for Accounts {
    // Not derived: the state holds password and token hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Opens `<dir>/accounts.json` (absent means no accounts yet).
    ///
    /// # Errors
    /// [`AccountError::Store`] when the file exists but cannot be read, parsed, or holds an
    /// unreadable hash.
    pub fn open(dir: &Path) -> Result<Self, AccountError> {
        let path = dir.join("accounts.json");
        let state: State = match indexer::library::read_json(&path)? {
            Some(state) => {
                State::check(&state).map_err(|reason| indexer::Error::DataDir {
                    path: path.display().to_string(),
                    reason,
                })?;
                state
            }
            None => State::default(),
        };
        Ok(Self {
            path,
            inner: Mutex::new(state),
        })
    }

    /// Whether there is no account yet (the first one may then be created without logging in).
    pub fn is_empty(&self) -> bool {
        self.lock().accounts.is_empty()
    }

    /// Creates an account.
    ///
    /// # Errors
    /// [`AccountError::InvalidName`], [`AccountError::WeakPassword`], [`AccountError::Exists`],
    /// or a write failure (then nothing changed).
    pub fn create(
        &self,
        name: &str,
        password: &str,
        role: Role,
    ) -> Result<AccountInfo, AccountError> {
        validate_name(name)?;
        validate_password(password)?;
        if self.lock().accounts.contains_key(name) {
            return Err(AccountError::Exists(name.to_owned()));
        }
        // Hashed outside the lock: argon2 is deliberately slow and would stall every request.
        let password_hash = hash_password(password);
        let mut state = self.lock();
        if state.accounts.contains_key(name) {
            return Err(AccountError::Exists(name.to_owned()));
        }
        let account = StoredAccount {
            role,
            password_hash,
            created: Utc::now(),
            disabled: false,
        };
        let info = account_info(name, &account);
        let mut next = state.clone();
        next.accounts.insert(name.to_owned(), account);
        self.save(&next)?;
        *state = next;
        Ok(info)
    }

    /// Every account, by name.
    pub fn list(&self) -> Vec<AccountInfo> {
        self.lock()
            .accounts
            .iter()
            .map(|(name, a)| account_info(name, a))
            .collect()
    }

    /// One account.
    ///
    /// # Errors
    /// [`AccountError::NotFound`].
    pub fn get(&self, name: &str) -> Result<AccountInfo, AccountError> {
        self.lock().info(name)
    }

    /// Changes an account's role; its tokens take the new role at once.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::LastAdmin`] when demoting the last enabled
    /// admin, or a write failure (then nothing changed).
    pub fn set_role(&self, name: &str, role: Role) -> Result<AccountInfo, AccountError> {
        self.update(name, |a| a.role = role)
    }

    /// Replaces an account's password. Its tokens keep working.
    ///
    /// # Errors
    /// [`AccountError::WeakPassword`], [`AccountError::NotFound`], or a write failure (then
    /// nothing changed).
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AccountError> {
        validate_password(password)?;
        self.lock().info(name)?;
        let password_hash = hash_password(password);
        self.update(name, |a| a.password_hash = password_hash)
            .map(drop)
    }

    /// Disables or re-enables an account. A disabled account's password and tokens fail with
    /// [`AccountError::Disabled`]; its tokens work again once it is re-enabled.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::LastAdmin`] when disabling the last enabled
    /// admin, or a write failure (then nothing changed).
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<AccountInfo, AccountError> {
        self.update(name, |a| a.disabled = disabled)
    }

    /// Deletes an account and all its tokens.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::LastAdmin`] when deleting the last enabled
    /// admin, or a write failure (then nothing changed).
    pub fn delete(&self, name: &str) -> Result<(), AccountError> {
        let mut state = self.lock();
        if !state.accounts.contains_key(name) {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        let mut next = state.clone();
        next.accounts.remove(name);
        next.tokens.retain(|_, t| t.account != name);
        keeps_an_admin(&state, &next)?;
        self.save(&next)?;
        *state = next;
        Ok(())
    }

    /// Checks a name and password.
    ///
    /// # Errors
    /// [`AccountError::BadCredentials`] for an unknown name or a wrong password (the same error
    /// and about the same time for both), [`AccountError::Disabled`] for the right password of
    /// a disabled account.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Principal, AccountError> {
        // Copied out so that the slow verification runs without the lock.
        let found = self
            .lock()
            .accounts
            .get(name)
            .map(|a| (a.password_hash.clone(), a.role, a.disabled));
        let Some((hash, role, disabled)) = found else {
            // Spend the same time as a real check, so timing does not reveal unknown names.
            let _ = check_password(DUMMY_HASH, password);
            return Err(AccountError::BadCredentials);
        };
        if !check_password(&hash, password) {
            return Err(AccountError::BadCredentials);
        }
        if disabled {
            return Err(AccountError::Disabled);
        }
        Ok(Principal {
            account: name.to_owned(),
            role,
            token: None,
        })
    }

    /// Issues a token; the secret is returned once and only its hash is stored.
    ///
    /// The secret reads `il_<id>_<43 characters of base64url>`: 12 hex characters of id (for
    /// look-up and listing) and 32 random bytes.
    ///
    /// # Errors
    /// [`AccountError::InvalidName`] for a bad token name, [`AccountError::InvalidTtl`] unless
    /// `ttl` is 1 minute to 366 days, [`AccountError::NotFound`], [`AccountError::Disabled`],
    /// or a write failure (then nothing changed).
    pub fn issue_token(
        &self,
        account: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<(String, TokenInfo), AccountError> {
        validate_name(name)?;
        if ttl < Duration::minutes(1) || ttl > Duration::days(366) {
            return Err(AccountError::InvalidTtl(format!(
                "{} seconds",
                ttl.num_seconds()
            )));
        }
        let mut state = self.lock();
        let owner = state
            .accounts
            .get(account)
            .ok_or_else(|| AccountError::NotFound(account.to_owned()))?;
        if owner.disabled {
            return Err(AccountError::Disabled);
        }
        let id = loop {
            let id = hex::encode(random_bytes::<6>());
            if !state.tokens.contains_key(&id) {
                break id;
            }
        };
        let secret = format!(
            "{TOKEN_PREFIX}{id}_{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>())
        );
        let created = Utc::now();
        let token = StoredToken {
            account: account.to_owned(),
            name: name.to_owned(),
            // A plain SHA-256 is enough here, unlike for passwords: the secret has 256 random
            // bits, so there is nothing to gain from a slow hash, and every request checks one.
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            created,
            expires: created + ttl,
            revoked: None,
        };
        let info = token_info(&id, &token);
        let mut next = state.clone();
        next.tokens.insert(id, token);
        self.save(&next)?;
        *state = next;
        Ok((secret, info))
    }

    /// Tokens, of one account or of all, oldest first; expired and revoked ones included.
    pub fn tokens(&self, account: Option<&str>) -> Vec<TokenInfo> {
        let state = self.lock();
        let mut out: Vec<TokenInfo> = state
            .tokens
            .iter()
            .filter(|(_, t)| account.is_none_or(|a| t.account == a))
            .map(|(id, t)| token_info(id, t))
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        out
    }

    /// Revokes a token for good. Revoking a revoked token changes nothing and returns it.
    ///
    /// # Errors
    /// [`AccountError::NotFound`] with the id, or a write failure (then nothing changed).
    pub fn revoke_token(&self, id: &str) -> Result<TokenInfo, AccountError> {
        let mut state = self.lock();
        let token = state
            .tokens
            .get(id)
            .ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
        if token.revoked.is_some() {
            return Ok(token_info(id, token));
        }
        let mut next = state.clone();
        let token = next.tokens.get_mut(id).expect("checked above");
        token.revoked = Some(Utc::now());
        let info = token_info(id, token);
        self.save(&next)?;
        *state = next;
        Ok(info)
    }

    /// Authenticates a token secret now.
    ///
    /// # Errors
    /// [`AccountError::BadCredentials`] for a malformed, unknown or tampered secret, then (for
    /// the right secret) [`AccountError::Revoked`], [`AccountError::Expired`] or
    /// [`AccountError::Disabled`], checked in that order.
    pub fn authenticate_token(&self, secret: &str) -> Result<Principal, AccountError> {
        self.authenticate_token_at(secret, Utc::now())
    }

    /// [`Accounts::authenticate_token`] as of `now`, so expiry can be tested.
    pub(crate) fn authenticate_token_at(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AccountError> {
        let id = token_id(secret).ok_or(AccountError::BadCredentials)?;
        let state = self.lock();
        let token = state.tokens.get(id).ok_or(AccountError::BadCredentials)?;
        let stored = decode_digest(&token.secret_sha256).ok_or(AccountError::BadCredentials)?;
        let given: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !constant_time_eq(&given, &stored) {
            return Err(AccountError::BadCredentials);
        }
        if token.revoked.is_some() {
            return Err(AccountError::Revoked);
        }
        if now >= token.expires {
            return Err(AccountError::Expired);
        }
        // Deleting an account deletes its tokens, so a missing owner is not expected; refuse.
        let owner = state
            .accounts
            .get(&token.account)
            .ok_or(AccountError::BadCredentials)?;
        if owner.disabled {
            return Err(AccountError::Disabled);
        }
        Ok(Principal {
            account: token.account.clone(),
            role: owner.role,
            token: Some(id.to_owned()),
        })
    }

    /// Parses an `Authorization` header value (`Bearer ...` or `Basic ...`) and authenticates it.
    ///
    /// The scheme is matched ignoring case (RFC 9110); `Basic` carries base64 of `name:password`
    /// (the password may itself contain `:`).
    ///
    /// # Errors
    /// [`AccountError::BadCredentials`] for anything unparseable or an unknown scheme; otherwise
    /// as [`Accounts::authenticate_token`] or [`Accounts::verify_password`].
    pub fn authenticate_header(&self, value: &str) -> Result<Principal, AccountError> {
        let (scheme, rest) = value
            .trim()
            .split_once(' ')
            .ok_or(AccountError::BadCredentials)?;
        let credentials = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.authenticate_token(credentials)
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(credentials)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(AccountError::BadCredentials)?;
            let (name, password) = decoded
                .split_once(':')
                .ok_or(AccountError::BadCredentials)?;
            self.verify_password(name, password)
        } else {
            Err(AccountError::BadCredentials)
        }
    }

    /// Applies `change` to a copy of one account, refuses it if no enabled admin would be left,
    /// writes, then swaps.
    fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut StoredAccount),
    ) -> Result<AccountInfo, AccountError> {
        let mut state = self.lock();
        let mut next = state.clone();
        let account = next
            .accounts
            .get_mut(name)
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))?;
        change(account);
        let info = account_info(name, account);
        keeps_an_admin(&state, &next)?;
        self.save(&next)?;
        *state = next;
        Ok(info)
    }

    fn save(&self, state: &State) -> Result<(), AccountError> {
        let bytes = serde_json::to_vec_pretty(state).expect("accounts serialise");
        #[cfg(unix)]
        self.restrict_temp_file()?;
        indexer::library::write_atomic(&self.path, &bytes)?;
        // Also after the write, in case `write_atomic` ever stops using `<path>.tmp`.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| io_error(&self.path, source))?;
        }
        Ok(())
    }

    /// Makes the temporary file `write_atomic` writes first (`<path>.tmp`) exist with mode 0600:
    /// `File::create` keeps an existing file's mode, so the hashes are never readable by others,
    /// not even between the write and the rename.
    #[cfg(unix)]
    fn restrict_temp_file(&self) -> Result<(), AccountError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let tmp = self.path.with_extension("tmp");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|source| io_error(&tmp, source))?;
        // `mode` applies only when the file is new; a leftover file keeps its own.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| io_error(&tmp, source))?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed: every change is
        // made on a copy and swapped in after the file is written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn account_info(name: &str, a: &StoredAccount) -> AccountInfo {
    AccountInfo {
        name: name.to_owned(),
        role: a.role,
        created: a.created,
        disabled: a.disabled,
    }
}

fn token_info(id: &str, t: &StoredToken) -> TokenInfo {
    TokenInfo {
        id: id.to_owned(),
        account: t.account.clone(),
        name: t.name.clone(),
        created: t.created,
        expires: t.expires,
        revoked: t.revoked,
    }
}

/// Refuses a change that leaves no enabled admin where there was one.
fn keeps_an_admin(before: &State, after: &State) -> Result<(), AccountError> {
    if before.enabled_admins() > 0 && after.enabled_admins() == 0 {
        Err(AccountError::LastAdmin)
    } else {
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::InvalidName(name.to_owned()))
    }
}

fn validate_password(password: &str) -> Result<(), AccountError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(AccountError::WeakPassword(format!(
            "it has {n} characters, at least {MIN_PASSWORD_LEN} are needed"
        )));
    }
    Ok(())
}

/// argon2id with the crate's default parameters and a random 16-byte salt, as a PHC string.
fn hash_password(password: &str) -> String {
    // The salt comes from `rand` (a CSPRNG seeded by the OS) rather than argon2's re-exported
    // `OsRng`: that one exists only when some other crate turns on `rand_core/getrandom`.
    let salt = SaltString::encode_b64(&random_bytes::<
        { argon2::password_hash::Salt::RECOMMENDED_LENGTH },
    >())
    .expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("default argon2 parameters accept any password and a 16-byte salt")
        .to_string()
}

/// Whether `password` matches the PHC string `hash` (constant-time comparison in the crate).
/// The parameters come from the hash itself, so older hashes keep verifying.
fn check_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The id in `il_<12 hex>_<rest>`, if the secret has that shape.
fn token_id(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(TOKEN_PREFIX)?;
    let id = rest.get(..TOKEN_ID_LEN)?;
    let ok = id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && rest[TOKEN_ID_LEN..].starts_with('_');
    ok.then_some(id)
}

fn decode_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

/// Compares two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn io_error(path: &Path, source: std::io::Error) -> AccountError {
    indexer::Error::Io {
        path: path.display().to_string(),
        source,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "correct horse battery";

    fn open() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        (dir, accounts)
    }

    fn basic(name: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{name}:{password}")))
    }

    #[test]
    fn role_table_grants_exactly_the_documented_permissions() {
        use Permission as P;
        let table: [(Role, &[Permission]); 4] = [
            (Role::Searcher, &[P::Search, P::ViewRecord]),
            (
                Role::Curator,
                &[P::Search, P::ViewRecord, P::Collections, P::Export],
            ),
            (
                Role::Auditor,
                &[P::Lookup, P::ReadAudit, P::ViewRecord, P::ViewUnredacted],
            ),
            (Role::Admin, &Permission::ALL),
        ];
        for (role, granted) in table {
            for p in Permission::ALL {
                assert_eq!(role.allows(p), granted.contains(&p), "{role} {p:?}");
                let who = Principal {
                    account: "x".into(),
                    role,
                    token: None,
                };
                assert_eq!(who.can(p), granted.contains(&p));
            }
        }
    }

    #[test]
    fn roles_parse_ignoring_case_and_unknown_roles_list_the_choices() {
        for role in Role::ALL {
            assert_eq!(role.as_str().to_uppercase().parse::<Role>().unwrap(), role);
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
        }
        let err = "root".parse::<Role>().unwrap_err().to_string();
        for role in Role::ALL {
            assert!(err.contains(role.as_str()), "{err}");
        }
        assert_eq!(
            serde_json::to_string(&Permission::ViewUnredacted).unwrap(),
            "\"view_unredacted\""
        );
    }

    #[test]
    fn dummy_hash_costs_as_much_as_a_real_one() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = argon2::Params::try_from(&dummy).unwrap();
        let default = argon2::Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert_eq!(dummy.algorithm, argon2::Algorithm::default().ident());
    }

    #[test]
    fn password_verifies_and_wrong_password_or_unknown_name_fail_alike() {
        let (_dir, accounts) = open();
        assert!(accounts.is_empty());
        let info = accounts.create("ada@lab", PW, Role::Curator).unwrap();
        assert_eq!(
            (info.name.as_str(), info.role, info.disabled),
            ("ada@lab", Role::Curator, false)
        );
        assert!(!accounts.is_empty());

        let who = accounts.verify_password("ada@lab", PW).unwrap();
        assert_eq!(
            who,
            Principal {
                account: "ada@lab".into(),
                role: Role::Curator,
                token: None
            }
        );
        let wrong = accounts
            .verify_password("ada@lab", "not the password")
            .unwrap_err();
        let unknown = accounts.verify_password("bob", PW).unwrap_err();
        assert!(matches!(wrong, AccountError::BadCredentials));
        assert!(matches!(unknown, AccountError::BadCredentials));
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert!(matches!(
            accounts.create("ada@lab", PW, Role::Admin),
            Err(AccountError::Exists(_))
        ));
    }

    #[test]
    fn weak_passwords_and_bad_names_are_refused() {
        let (_dir, accounts) = open();
        let err = accounts.create("ada", "short", Role::Admin).unwrap_err();
        assert!(matches!(err, AccountError::WeakPassword(_)));
        assert!(err.to_string().contains("12"), "{err}");
        assert!(!err.to_string().contains("short"));
        for bad in ["", "a b", "a:b", "../x", "é", &"x".repeat(65)] {
            assert!(
                matches!(
                    accounts.create(bad, PW, Role::Admin),
                    Err(AccountError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(accounts.is_empty());
        validate_name(&"x".repeat(64)).unwrap();
        validate_name("A.b_c@d-9").unwrap();
    }

    #[test]
    fn tokens_authenticate_until_revoked_or_expired_and_tampering_fails() {
        let (_dir, accounts) = open();
        accounts.create("ci", PW, Role::Searcher).unwrap();
        let (secret, info) = accounts
            .issue_token("ci", "nightly", Duration::hours(1))
            .unwrap();
        assert!(secret.starts_with(&format!("il_{}_", info.id)));
        assert_eq!(info.id.len(), 12);
        assert_eq!(secret.len(), 3 + 12 + 1 + 43);
        assert_eq!(
            (info.account.as_str(), info.name.as_str()),
            ("ci", "nightly")
        );
        assert_eq!(info.expires - info.created, Duration::hours(1));

        let who = accounts.authenticate_token(&secret).unwrap();
        assert_eq!(
            who,
            Principal {
                account: "ci".into(),
                role: Role::Searcher,
                token: Some(info.id.clone())
            }
        );
        // The role is the account's current one, not the one at issue.
        accounts.set_role("ci", Role::Auditor).unwrap();
        assert_eq!(
            accounts.authenticate_token(&secret).unwrap().role,
            Role::Auditor
        );

        let mut tampered = secret.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        for bad in [
            tampered.as_str(),
            "il_",
            "il_zzzzzzzzzzzz_x",
            "il_000000000000_x",
            "",
        ] {
            assert!(
                matches!(
                    accounts.authenticate_token(bad),
                    Err(AccountError::BadCredentials)
                ),
                "{bad:?}"
            );
        }

        assert!(matches!(
            accounts.authenticate_token_at(&secret, info.expires),
            Err(AccountError::Expired)
        ));
        assert!(
            accounts
                .authenticate_token_at(&secret, info.expires - Duration::seconds(1))
                .is_ok()
        );

        let revoked = accounts.revoke_token(&info.id).unwrap();
        assert!(revoked.revoked.is_some());
        assert_eq!(accounts.revoke_token(&info.id).unwrap(), revoked);
        assert!(matches!(
            accounts.authenticate_token(&secret),
            Err(AccountError::Revoked)
        ));
        assert!(matches!(
            accounts.revoke_token("000000000000"),
            Err(AccountError::NotFound(_))
        ));
        assert_eq!(accounts.tokens(Some("ci")), [revoked]);
        assert!(accounts.tokens(Some("other")).is_empty());
    }

    #[test]
    fn token_lifetimes_outside_a_minute_to_366_days_and_bad_owners_are_refused() {
        let (_dir, accounts) = open();
        for ttl in [
            Duration::seconds(59),
            Duration::days(367),
            Duration::minutes(-5),
        ] {
            assert!(matches!(
                accounts.issue_token("nobody", "t", ttl),
                Err(AccountError::InvalidTtl(_))
            ));
        }
        assert!(matches!(
            accounts.issue_token("nobody", "t", Duration::days(366)),
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            accounts.issue_token("nobody", "a b", Duration::days(1)),
            Err(AccountError::InvalidName(_))
        ));
    }

    #[test]
    fn disabled_accounts_fail_with_disabled_for_password_and_token() {
        let (_dir, accounts) = open();
        accounts.create("eve", PW, Role::Searcher).unwrap();
        let (secret, _) = accounts.issue_token("eve", "t", Duration::days(1)).unwrap();
        assert!(accounts.set_disabled("eve", true).unwrap().disabled);
        assert!(matches!(
            accounts.verify_password("eve", PW),
            Err(AccountError::Disabled)
        ));
        assert!(matches!(
            accounts.authenticate_token(&secret),
            Err(AccountError::Disabled)
        ));
        assert!(matches!(
            accounts.issue_token("eve", "t2", Duration::days(1)),
            Err(AccountError::Disabled)
        ));
        accounts.set_disabled("eve", false).unwrap();
        assert!(accounts.authenticate_token(&secret).is_ok());
    }

    #[test]
    fn last_enabled_admin_cannot_be_demoted_disabled_or_deleted() {
        let (_dir, accounts) = open();
        accounts.create("root", PW, Role::Admin).unwrap();
        assert!(matches!(
            accounts.set_role("root", Role::Curator),
            Err(AccountError::LastAdmin)
        ));
        assert!(matches!(
            accounts.set_disabled("root", true),
            Err(AccountError::LastAdmin)
        ));
        assert!(matches!(
            accounts.delete("root"),
            Err(AccountError::LastAdmin)
        ));
        assert_eq!(accounts.get("root").unwrap().role, Role::Admin);
        assert!(!accounts.get("root").unwrap().disabled);

        // With a second admin, either may go; the survivor is then protected.
        accounts.create("root2", PW, Role::Admin).unwrap();
        accounts.set_disabled("root2", true).unwrap();
        assert!(matches!(
            accounts.delete("root"),
            Err(AccountError::LastAdmin)
        ));
        accounts.set_disabled("root2", false).unwrap();
        accounts.set_role("root", Role::Searcher).unwrap();
        accounts.delete("root").unwrap();
        assert!(matches!(
            accounts.get("root"),
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            accounts.set_role("root2", Role::Auditor),
            Err(AccountError::LastAdmin)
        ));
    }

    #[test]
    fn accounts_and_tokens_persist_without_the_password_or_secret() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        accounts.create("ada", PW, Role::Admin).unwrap();
        accounts.create("bob", PW, Role::Searcher).unwrap();
        let (secret, info) = accounts
            .issue_token("ada", "cli", Duration::days(30))
            .unwrap();
        accounts
            .issue_token("bob", "cli", Duration::days(30))
            .unwrap();
        accounts.delete("bob").unwrap();
        assert!(format!("{accounts:?}").contains("accounts.json"));
        assert!(!format!("{accounts:?}").contains("argon2"));
        drop(accounts);

        let path = dir.path().join("accounts.json");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(PW));
        assert!(!text.contains(&secret));
        assert!(!text.contains(secret.rsplit('_').next().unwrap()));
        assert!(text.contains("$argon2id$"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let again = Accounts::open(dir.path()).unwrap();
        assert_eq!(again.list().len(), 1);
        assert_eq!(again.tokens(None), std::slice::from_ref(&info));
        assert_eq!(
            again.authenticate_token(&secret).unwrap().token,
            Some(info.id)
        );
        // The stored hash is the one that was written: the password still verifies.
        again.set_role("ada", Role::Admin).unwrap();
        assert!(again.authenticate_header(&basic("ada", PW)).is_ok());
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(dir.path()).unwrap();
        // A non-empty directory where the file goes: the final rename fails.
        std::fs::create_dir_all(dir.path().join("accounts.json/blocker")).unwrap();
        assert!(matches!(
            accounts.create("ada", PW, Role::Admin),
            Err(AccountError::Store(_))
        ));
        assert!(accounts.is_empty());
    }

    #[test]
    fn unreadable_files_are_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            Accounts::open(dir.path()),
            Err(AccountError::Store(_))
        ));
        let bad_hash = r#"{"accounts":{"a":{"role":"admin","password_hash":"plain","created":"2024-01-01T00:00:00Z"}}}"#;
        std::fs::write(&path, bad_hash).unwrap();
        assert!(matches!(
            Accounts::open(dir.path()),
            Err(AccountError::Store(_))
        ));
    }

    #[test]
    fn authorization_header_accepts_bearer_and_basic_and_rejects_garbage() {
        let (_dir, accounts) = open();
        let pw = "pass:with:colons";
        accounts.create("ada", pw, Role::Auditor).unwrap();
        let (secret, info) = accounts.issue_token("ada", "t", Duration::days(1)).unwrap();

        let by_token = accounts
            .authenticate_header(&format!("Bearer {secret}"))
            .unwrap();
        assert_eq!(by_token.token, Some(info.id));
        assert_eq!(
            accounts
                .authenticate_header(&format!("bearer  {secret} "))
                .unwrap()
                .account,
            "ada"
        );

        let by_password = accounts.authenticate_header(&basic("ada", pw)).unwrap();
        assert_eq!((by_password.role, by_password.token), (Role::Auditor, None));

        for garbage in [
            String::new(),
            "Bearer".into(),
            format!("Token {secret}"),
            secret.clone(),
            "Basic !!!notbase64".into(),
            format!("Basic {}", STANDARD.encode("no-colon")),
            format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'x'])),
            "Bearer il_nothing".into(),
        ] {
            assert!(
                matches!(
                    accounts.authenticate_header(&garbage),
                    Err(AccountError::BadCredentials)
                ),
                "{garbage:?}"
            );
        }
    }
}
