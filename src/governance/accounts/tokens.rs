//! Tokens: issuing (the secret shown once, only its hash kept), listing, revoking and
//! checking them, and the digest helpers the session's CSRF check shares.

use super::*;

impl Accounts {
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
        self.issue_token_until(account, name, ttl, None)
    }

    /// [`Accounts::issue_token`], expiring at `cap` at the latest.
    fn issue_token_until(
        &self,
        account: &str,
        name: &str,
        ttl: Duration,
        cap: Option<DateTime<Utc>>,
    ) -> Result<(String, TokenInfo), AccountError> {
        validate_name(name)?;
        if ttl < Duration::minutes(1) || ttl > Duration::days(366) {
            return Err(AccountError::InvalidTtl(format!(
                "{} seconds",
                ttl.num_seconds()
            )));
        }
        self.file.change(|state| {
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
                expires: cap.map_or(created + ttl, |cap| cap.min(created + ttl)),
                revoked: None,
            };
            let info = token_info(&id, &token);
            state.tokens.insert(id, token);
            Ok((secret, info))
        })
    }

    /// Issues a token on behalf of `by`. A caller signed in with a token cannot issue a token
    /// that outlives its own: the new token's expiry is capped at the caller's token's expiry
    /// (the third value is `Some(cap)` when it was). A caller signed in with a password may
    /// issue up to 366 days, as [`Accounts::issue_token`].
    ///
    /// # Errors
    /// As [`Accounts::issue_token`], and [`AccountError::CallerTokenExpiring`] when the
    /// caller's token expires in less than a minute.
    pub fn issue_token_by(
        &self,
        by: &Principal,
        account: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<(String, TokenInfo, Option<DateTime<Utc>>), AccountError> {
        let cap = match &by.token {
            None => None,
            Some(id) => {
                let state = self.lock();
                // A principal's token exists (it just authenticated); a missing one issues
                // nothing rather than falling back to the full lifetime.
                let expires = state
                    .tokens
                    .get(id)
                    .map(|t| t.expires)
                    .ok_or(AccountError::BadCredentials)?;
                Some(expires)
            }
        };
        let Some(cap) = cap else {
            let (secret, info) = self.issue_token(account, name, ttl)?;
            return Ok((secret, info, None));
        };
        let now = Utc::now();
        let left = cap - now;
        if left < Duration::minutes(1) {
            return Err(AccountError::CallerTokenExpiring(cap.to_rfc3339()));
        }
        if ttl <= left {
            let (secret, info) = self.issue_token(account, name, ttl)?;
            return Ok((secret, info, None));
        }
        // Range-check what was asked for first, so a bad request reads as one.
        if ttl < Duration::minutes(1) || ttl > Duration::days(366) {
            return Err(AccountError::InvalidTtl(format!(
                "{} seconds",
                ttl.num_seconds()
            )));
        }
        let (secret, info) = self.issue_token_until(account, name, ttl, Some(cap))?;
        Ok((secret, info, Some(cap)))
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
        self.file.change_if(|state| {
            let token = state
                .tokens
                .get_mut(id)
                .ok_or_else(|| AccountError::NotFound(id.to_owned()))?;
            if token.revoked.is_some() {
                return Ok((false, token_info(id, token)));
            }
            token.revoked = Some(Utc::now());
            Ok((true, token_info(id, token)))
        })
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
        self.authenticate(&Credentials::parse(value))
    }

    /// Authenticates parsed credentials.
    ///
    /// # Errors
    /// As [`Accounts::authenticate_header`].
    pub fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AccountError> {
        match credentials {
            Credentials::Bearer(secret) => self.authenticate_token(secret),
            Credentials::Basic { name, password } => self.verify_password(name, password),
            Credentials::Malformed => Err(AccountError::BadCredentials),
        }
    }
}

pub(super) fn token_info(id: &str, t: &StoredToken) -> TokenInfo {
    TokenInfo {
        id: id.to_owned(),
        account: t.account.clone(),
        name: t.name.clone(),
        created: t.created,
        expires: t.expires,
        revoked: t.revoked,
    }
}

/// The id in `il_<12 hex>_<rest>`, if the secret has that shape.
pub(super) fn token_id(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(TOKEN_PREFIX)?;
    let id = rest.get(..TOKEN_ID_LEN)?;
    let ok = id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && rest[TOKEN_ID_LEN..].starts_with('_');
    ok.then_some(id)
}

pub(crate) fn decode_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

/// Compares two digests in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
