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
//! | `manage_library` |          |         |         |   x   |
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
//! - A change to an account is all or nothing ([`Accounts::change`]): every part is checked
//!   before any is applied, and a refused change leaves the account as it was.
//! - A token never issues a token that outlives it ([`Accounts::issue_token_by`] caps the
//!   lifetime at the caller's own token's expiry); a password sign-in may issue up to 366 days.
//! - Failed sign-ins are counted per account name (known or not, alike) and per address by a
//!   bounded [`SignInThrottle`], and password checks (argon2, about 17 MiB each) run at most
//!   [`MAX_CONCURRENT_PASSWORD_CHECKS`] at a time ([`Accounts::password_slots`]).
//! - The file is written atomically after every change, under one lock: each change is made on
//!   a copy, written, then swapped in, so a failed write changes nothing in memory. On Unix the
//!   file is readable by its owner only (0600).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use argon2::password_hash::PasswordHash;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use indexer::Fault;
use indexer::json_file::JsonFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

/// Longest account or token name.
pub const MAX_NAME_LEN: usize = 64;

/// Shortest password, in characters.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Longest password, in bytes (argon2 hashes any length, but a megabyte password is no
/// password: it is a request body).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Password checks (argon2id, about 17 MiB of memory each) that may run at once.
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 4;

/// Failed sign-ins per account name or per address within [`THROTTLE_WINDOW`] after which
/// further attempts are refused until the oldest failure leaves the window.
pub const MAX_FAILED_SIGN_INS: usize = 10;

/// The window of [`MAX_FAILED_SIGN_INS`].
pub const THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// Most names and addresses the throttle remembers at once (memory stays bounded however many
/// names an attacker invents).
const MAX_THROTTLE_KEYS: usize = 50_000;

/// What every token secret starts with, so leaked secrets are recognisable (as GitHub's `ghp_`).
const TOKEN_PREFIX: &str = "il_";

/// Hex characters of a token id (6 random bytes).
const TOKEN_ID_LEN: usize = 12;

mod password;
mod roles;
mod signin;
mod tokens;

use password::{DUMMY_HASH, check_password, hash_password, random_bytes, validate_password};

pub use roles::{Permission, Role, UnknownRole};
pub use signin::{Credentials, SignInThrottle, address_key};
use tokens::token_id;
pub(crate) use tokens::{constant_time_eq, decode_digest};

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
    /// The token used to issue a token expires in less than a minute: a token it issued would
    /// live less than the shortest lifetime.
    #[error(
        "the token used expires at {0}, in less than a minute, and a token cannot issue one that \
         outlives it: sign in with the account's password to issue a new token"
    )]
    CallerTokenExpiring(String),
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
    file: JsonFile<State>,
    throttle: SignInThrottle,
    password_slots: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for Accounts {
    // Not derived: the state holds password and token hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("path", &self.file.path())
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
        let file = JsonFile::open_checked(dir.join("accounts.json"), State::check)?.private();
        Ok(Self {
            file,
            throttle: SignInThrottle::new(MAX_FAILED_SIGN_INS, THROTTLE_WINDOW),
            password_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PASSWORD_CHECKS)),
        })
    }

    /// The failed sign-in counter of this service.
    pub fn throttle(&self) -> &SignInThrottle {
        &self.throttle
    }

    /// Slots for password checks: a caller about to verify a password from an untrusted
    /// request holds one, so at most [`MAX_CONCURRENT_PASSWORD_CHECKS`] argon2 computations
    /// (about 17 MiB each) run at once.
    pub fn password_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.password_slots
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
        self.file.change(|state| {
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
            state.accounts.insert(name.to_owned(), account);
            Ok(info)
        })
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
        self.change(
            name,
            &AccountUpdate {
                role: Some(role),
                ..AccountUpdate::default()
            },
        )
    }

    /// Replaces an account's password. Its tokens keep working.
    ///
    /// # Errors
    /// [`AccountError::WeakPassword`], [`AccountError::NotFound`], or a write failure (then
    /// nothing changed).
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AccountError> {
        self.change(
            name,
            &AccountUpdate {
                password: Some(password.to_owned()),
                ..AccountUpdate::default()
            },
        )
        .map(drop)
    }

    /// Disables or re-enables an account. A disabled account's password and tokens fail with
    /// [`AccountError::Disabled`]; its tokens work again once it is re-enabled.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::LastAdmin`] when disabling the last enabled
    /// admin, or a write failure (then nothing changed).
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<AccountInfo, AccountError> {
        self.change(
            name,
            &AccountUpdate {
                disabled: Some(disabled),
                ..AccountUpdate::default()
            },
        )
    }

    /// Changes an account's role, password and state at once, all or nothing: the password's
    /// length, the account's existence and the last-admin rule are checked for the whole
    /// change before anything is applied, then it is written once. A refused change leaves
    /// the account exactly as it was.
    ///
    /// # Errors
    /// [`AccountError::WeakPassword`], [`AccountError::NotFound`], [`AccountError::LastAdmin`],
    /// or a write failure (then nothing changed).
    pub fn change(&self, name: &str, update: &AccountUpdate) -> Result<AccountInfo, AccountError> {
        if let Some(p) = &update.password {
            validate_password(p)?;
        }
        // Everything but the hash, checked on a copy before the (slow) hash is computed.
        {
            let state = self.lock();
            let mut next = state.clone();
            apply_update(&mut next, name, update, None)?;
            keeps_an_admin(&state, &next)?;
        }
        // Hashed outside the lock: argon2 is deliberately slow and would stall every request.
        let password_hash = update.password.as_deref().map(hash_password);
        self.file.change(|state| {
            let before = state.clone();
            let info = apply_update(state, name, update, password_hash)?;
            // Checked again: another change may have landed while the hash was computed.
            keeps_an_admin(&before, state)?;
            Ok(info)
        })
    }

    /// Deletes an account and all its tokens.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::LastAdmin`] when deleting the last enabled
    /// admin, or a write failure (then nothing changed).
    pub fn delete(&self, name: &str) -> Result<(), AccountError> {
        self.file.change(|state| {
            let before = state.clone();
            if state.accounts.remove(name).is_none() {
                return Err(AccountError::NotFound(name.to_owned()));
            }
            state.tokens.retain(|_, t| t.account != name);
            keeps_an_admin(&before, state)
        })
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.file.read()
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

/// Changes to one account for [`Accounts::change`]; absent fields stay as they are.
#[derive(Clone, Default)]
pub struct AccountUpdate {
    /// New role.
    pub role: Option<Role>,
    /// New password (checked for length, then hashed).
    pub password: Option<String>,
    /// Disable (or enable) the account.
    pub disabled: Option<bool>,
}

impl fmt::Debug for AccountUpdate {
    // Not derived: never print a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountUpdate")
            .field("role", &self.role)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// Applies `update` to account `name` in `state` (with `password_hash` for a new password;
/// `None` leaves the hash as it is, for the dry run before hashing).
fn apply_update(
    state: &mut State,
    name: &str,
    update: &AccountUpdate,
    password_hash: Option<String>,
) -> Result<AccountInfo, AccountError> {
    let account = state
        .accounts
        .get_mut(name)
        .ok_or_else(|| AccountError::NotFound(name.to_owned()))?;
    if let Some(role) = update.role {
        account.role = role;
    }
    if let Some(disabled) = update.disabled {
        account.disabled = disabled;
    }
    if let Some(hash) = password_hash {
        account.password_hash = hash;
    }
    Ok(account_info(name, account))
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

#[cfg(test)]
mod tests;
