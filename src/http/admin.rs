//! Administration: accounts and tokens, the audit trail, retention, and deletion with receipts.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{ApiError, AppState, ErrorBody, Permission, blocking};
use crate::accounts::{AccountInfo, AccountUpdate, Role, TokenInfo};
use crate::audit::{AuditEntry, AuditQuery, VerifyReport};
use crate::deletion::{self, DeletionError, DeletionReceipt, Stores};
use crate::governance::Action;
use crate::retention::{Plan, RetentionError, RetentionPolicy};

impl From<DeletionError> for ApiError {
    fn from(e: DeletionError) -> Self {
        match e {
            DeletionError::Held { .. } => {
                ApiError::new(StatusCode::CONFLICT, "legal_hold", e.to_string())
            }
            DeletionError::NothingFound(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// Runs [`deletion::delete`] on the blocking pool.
async fn run_delete(
    state: &AppState,
    caller: &Caller,
    ids: Vec<String>,
    reason: String,
) -> Result<DeletionReceipt, ApiError> {
    let state2 = state.clone();
    let context = caller.entry(Action::Delete);
    let actor = caller.principal.account.clone();
    blocking(move || {
        let stores = Stores {
            library: state2.service().library(),
            collections: state2.collections(),
            retention: state2.retention(),
            audit: state2.audit(),
        };
        Ok(deletion::delete(stores, &ids, &actor, &reason, context)?)
    })
    .await
}

/// Why a record is deleted.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReasonQuery {
    /// Why (request reference); required.
    pub reason: Option<String>,
}

fn reason_of(reason: Option<String>) -> Result<String, ApiError> {
    reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("reason is required (e.g. the erasure request's reference)")
        })
}

/// Deletes one record from every store and returns the receipt.
#[utoipa::path(delete, path = "/v1/records/{id}", tag = "admin",
    params(("id" = String, Path, description = "record id"), ReasonQuery),
    responses(
        (status = 200, description = "deleted everywhere", body = DeletionReceipt),
        (status = 404, description = "no such record", body = ErrorBody),
        (status = 409, description = "on legal hold", body = ErrorBody),
    ))]
pub async fn delete_record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ReasonQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeletionReceipt>, ApiError> {
    caller.require(&state, Action::Delete).await?;
    let Query(q) = q?;
    let reason = reason_of(q.reason)?;
    Ok(Json(run_delete(&state, &caller, vec![id], reason).await?))
}

/// Records to delete: ids and/or a whole dataset.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeletionRequest {
    /// Record ids.
    pub ids: Vec<String>,
    /// Every record of this dataset.
    pub dataset: Option<String>,
    /// Why (request reference); required.
    pub reason: String,
}

/// Deletes records (by id and/or dataset) from every store and returns the receipt.
#[utoipa::path(post, path = "/v1/deletions", tag = "admin", request_body = DeletionRequest,
    responses(
        (status = 200, description = "deleted everywhere", body = DeletionReceipt),
        (status = 400, description = "no reason or nothing named", body = ErrorBody),
        (status = 404, description = "none of them exists", body = ErrorBody),
        (status = 409, description = "some are on legal hold; nothing deleted", body = ErrorBody),
    ))]
pub async fn delete_records(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<DeletionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DeletionReceipt>, ApiError> {
    caller.require(&state, Action::Delete).await?;
    let Json(body) = body?;
    let reason = reason_of(Some(body.reason))?;
    let mut ids = body.ids;
    if let Some(dataset) = body.dataset {
        let service = state.service().clone();
        let name = dataset.clone();
        let more = blocking(move || Ok(deletion::dataset_ids(service.library(), &name)?)).await?;
        if more.is_empty() && ids.is_empty() {
            let shown: String = dataset.chars().take(64).collect();
            return Err(ApiError::not_found(format!(
                "no dataset named {shown:?}: it has no records in the library"
            )));
        }
        ids.extend(more);
    }
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "name the records to delete: give ids, a dataset, or both",
        ));
    }
    Ok(Json(run_delete(&state, &caller, ids, reason).await?))
}

/// Most audit entries one request returns.
const MAX_AUDIT_PAGE: usize = 10_000;

/// Audit entries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntries {
    /// Oldest first.
    pub entries: Vec<AuditEntry>,
}

/// Who saw which records, when and why: entries by record id, actor, action and time.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "matching entries, oldest first", body = AuditEntries),
        (status = 400, description = "a bad parameter", body = ErrorBody),
    ))]
pub async fn audit_query(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditEntries>, ApiError> {
    caller.require(&state, Action::AuditQuery).await?;
    let Query(q) = q?;
    if q.limit.is_some_and(|l| l == 0 || l > MAX_AUDIT_PAGE) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_AUDIT_PAGE}"
        )));
    }
    let state2 = state.clone();
    let q2 = q.clone();
    let entries = blocking(move || {
        state2
            .audit()
            .query(&q2)
            .map_err(|e| ApiError::internal(format!("audit trail: {e}")))
    })
    .await?;
    // The record asked about is kept as its ref, like every record in the trail.
    let mut logged = q.clone();
    logged.record = q.record.as_deref().map(|id| state.audit().record_ref(id));
    caller
        .audit(
            &state,
            Action::AuditQuery,
            Some(serde_json::to_value(&logged).map_err(ApiError::internal)?),
            vec![],
        )
        .await?;
    Ok(Json(AuditEntries { entries }))
}

/// Checks the hash chain of the whole trail.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "the verdict (ok false names the first bad entry)", body = VerifyReport)))]
pub async fn audit_verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    caller.require(&state, Action::AuditVerify).await?;
    let state2 = state.clone();
    let report = blocking(move || {
        state2
            .audit()
            .verify()
            .map_err(|e| ApiError::internal(format!("audit trail: {e}")))
    })
    .await?;
    Ok(Json(report))
}

/// Every account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    /// By name.
    pub accounts: Vec<AccountInfo>,
}

/// Accounts and their roles.
#[utoipa::path(get, path = "/v1/accounts", tag = "admin",
    responses((status = 200, description = "every account", body = AccountList)))]
pub async fn list_accounts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AccountList>, ApiError> {
    caller.require(&state, Action::AccountList).await?;
    Ok(Json(AccountList {
        accounts: state.accounts().list(),
    }))
}

/// A new account.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Name.
    pub name: String,
    /// Password (at least 12 characters).
    pub password: String,
    /// Role.
    pub role: Role,
}

/// Creates an account.
#[utoipa::path(post, path = "/v1/accounts", tag = "admin", request_body = NewAccount,
    responses(
        (status = 201, description = "created", body = AccountInfo),
        (status = 400, description = "bad name or weak password", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    ))]
pub async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewAccount>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<AccountInfo>), ApiError> {
    caller.require(&state, Action::AccountCreate).await?;
    let Json(body) = body?;
    let state2 = state.clone();
    let (name, role) = (body.name.clone(), body.role);
    let result = blocking(move || {
        Ok(state2
            .accounts()
            .create(&body.name, &body.password, body.role)?)
    })
    .await;
    let info = account_audit(
        &state,
        &caller,
        Action::AccountCreate,
        &name,
        serde_json::json!({ "role": role }),
        result,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Longest account name kept as typed in the trail of a refused change.
const MAX_LOGGED_NAME: usize = 128;

/// Writes the audit entry of an account or token change, whether it was made or refused
/// (outcome `refused` for a refusal, `error` for our failure, with the message), then returns
/// `result`.
async fn account_audit<T>(
    state: &AppState,
    caller: &Caller,
    action: Action,
    name: &str,
    detail: serde_json::Value,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut entry = caller.entry(action);
    let name: String = name.chars().take(MAX_LOGGED_NAME).collect();
    entry.query = Some(serde_json::json!({ "account": name }));
    let mut detail = detail;
    if let Err(e) = &result {
        entry.outcome = if e.status().is_server_error() {
            "error".into()
        } else {
            "refused".into()
        };
        if let Some(d) = detail.as_object_mut() {
            d.insert("status".into(), e.status().as_u16().into());
            d.insert(
                "error".into(),
                e.message().chars().take(500).collect::<String>().into(),
            );
        }
    }
    entry.detail = Some(detail);
    caller.write(state, entry).await?;
    result
}

/// Changes to an account; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AccountChange {
    /// New role.
    pub role: Option<Role>,
    /// New password.
    pub password: Option<String>,
    /// Disable (or enable) the account; a disabled account's tokens stop working.
    pub disabled: Option<bool>,
}

/// Changes an account's role, password or state.
#[utoipa::path(patch, path = "/v1/accounts/{name}", tag = "admin",
    params(("name" = String, Path, description = "account name")),
    request_body = AccountChange,
    responses(
        (status = 200, description = "changed", body = AccountInfo),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "would leave no admin", body = ErrorBody),
    ))]
pub async fn update_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<AccountChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AccountInfo>, ApiError> {
    caller.require(&state, Action::AccountUpdate).await?;
    let Json(body) = body?;
    let detail = serde_json::json!({
        "role": body.role, "disabled": body.disabled, "password_changed": body.password.is_some(),
    });
    let state2 = state.clone();
    let name2 = name.clone();
    // All or nothing: the whole change is checked before any of it is applied.
    let result = blocking(move || {
        let update = AccountUpdate {
            role: body.role,
            password: body.password,
            disabled: body.disabled,
        };
        Ok(state2.accounts().change(&name2, &update)?)
    })
    .await;
    let info = account_audit(
        &state,
        &caller,
        Action::AccountUpdate,
        &name,
        detail,
        result,
    )
    .await?;
    Ok(Json(info))
}

/// Deletes an account and its tokens.
#[utoipa::path(delete, path = "/v1/accounts/{name}", tag = "admin",
    params(("name" = String, Path, description = "account name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "the last admin", body = ErrorBody),
    ))]
pub async fn delete_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&state, Action::AccountDelete).await?;
    let state2 = state.clone();
    let name2 = name.clone();
    let result = blocking(move || Ok(state2.accounts().delete(&name2)?)).await;
    account_audit(
        &state,
        &caller,
        Action::AccountDelete,
        &name,
        serde_json::json!({}),
        result,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token to issue.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (e.g. the curation tool's name).
    pub name: String,
    /// For another account (needs `manage_accounts`); default the caller.
    pub account: Option<String>,
    /// Lifetime in days (default 30, at most 366). A caller signed in with a token gets at
    /// most what its own token has left: the new token's expiry is capped at the caller's
    /// token's (see `capped_at` in the answer); sign in with the password for longer.
    pub ttl_days: Option<u32>,
}

/// A newly issued token: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// Send as `Authorization: Bearer <secret>`. Not stored: it cannot be shown again.
    pub secret: String,
    /// The token.
    pub token: TokenInfo,
    /// Set when the lifetime asked for was cut short: a token cannot issue a token that
    /// outlives it, so the new one expires with the caller's token, at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped_at: Option<DateTime<Utc>>,
}

/// Issues an API token (for oneself, or for another account with `manage_accounts`).
#[utoipa::path(post, path = "/v1/tokens", tag = "admin", request_body = NewToken,
    responses(
        (status = 201, description = "issued; the secret is shown once", body = IssuedToken),
        (status = 400, description = "bad lifetime", body = ErrorBody),
        (status = 403, description = "a token for another account", body = ErrorBody),
    ))]
pub async fn issue_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let Json(body) = body?;
    let account = body
        .account
        .clone()
        .unwrap_or_else(|| caller.principal.account.clone());
    if account != caller.principal.account {
        caller.require(&state, Action::TokenIssue).await?;
    }
    let ttl = Duration::days(i64::from(body.ttl_days.unwrap_or(30)));
    let state2 = state.clone();
    let account2 = account.clone();
    let by = caller.principal.clone();
    let result = blocking(move || {
        Ok(state2
            .accounts()
            .issue_token_by(&by, &account2, &body.name, ttl)?)
    })
    .await;
    let detail = match &result {
        Ok((_, token, capped_at)) => serde_json::json!({
            "token": token.id, "expires": token.expires, "capped_at": capped_at,
        }),
        Err(_) => serde_json::json!({ "ttl_days": body.ttl_days }),
    };
    let (secret, token, capped_at) = account_audit(
        &state,
        &caller,
        Action::TokenIssue,
        &account,
        detail,
        result,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            secret,
            token,
            capped_at,
        }),
    ))
}

/// Tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Newest first.
    pub tokens: Vec<TokenInfo>,
}

/// The caller's tokens (every account's with `manage_accounts`); never the secrets.
#[utoipa::path(get, path = "/v1/tokens", tag = "admin",
    responses((status = 200, description = "tokens", body = TokenList)))]
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> Json<TokenList> {
    let all = caller.principal.can(Permission::ManageAccounts);
    let account = (!all).then_some(caller.principal.account.as_str());
    Json(TokenList {
        tokens: state.accounts().tokens(account),
    })
}

/// Who the caller is: what a front end needs to show the right views.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// Account name.
    pub account: String,
    /// Its role.
    pub role: Role,
    /// The permissions that role grants, by name.
    pub permissions: Vec<String>,
    /// The token the request was signed with (`None` for a password).
    pub token: Option<TokenInfo>,
}

/// The caller's account, role and permissions, and the token it signed in with. Discloses
/// nothing about records, so it needs no permission and is not audited (like `/v1/tokens`).
#[utoipa::path(get, path = "/v1/whoami", tag = "admin",
    responses((status = 200, description = "the caller", body = WhoAmI)))]
pub async fn whoami(State(state): State<AppState>, caller: Caller) -> Json<WhoAmI> {
    let p = &caller.principal;
    let token = p.token.as_ref().and_then(|id| {
        state
            .accounts()
            .tokens(Some(&p.account))
            .into_iter()
            .find(|t| &t.id == id)
    });
    Json(WhoAmI {
        account: p.account.clone(),
        role: p.role,
        permissions: Permission::ALL
            .iter()
            .filter(|perm| p.can(**perm))
            .map(|perm| perm.to_string())
            .collect(),
        token,
    })
}

/// Revokes a token (one's own, or any with `manage_accounts`).
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "admin",
    params(("id" = String, Path, description = "token id")),
    responses(
        (status = 200, description = "revoked", body = TokenInfo),
        (status = 404, description = "no such token", body = ErrorBody),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let owner = state
        .accounts()
        .tokens(None)
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.account);
    // Permission first: without `manage_accounts` an unknown id and another account's token
    // get the same refusal, so the answer does not tell which token ids exist.
    if owner.as_deref() != Some(caller.principal.account.as_str()) {
        caller.require(&state, Action::TokenRevoke).await?;
    }
    let Some(owner) = owner else {
        let shown: String = id.chars().take(64).collect();
        return Err(ApiError::not_found(format!("no token with id {shown:?}")));
    };
    let state2 = state.clone();
    let id2 = id.clone();
    let result = blocking(move || Ok(state2.accounts().revoke_token(&id2)?)).await;
    let info = account_audit(
        &state,
        &caller,
        Action::TokenRevoke,
        &owner,
        serde_json::json!({ "token": id }),
        result,
    )
    .await?;
    Ok(Json(info))
}

/// The retention schedules and legal holds.
#[utoipa::path(get, path = "/v1/retention", tag = "admin",
    responses((status = 200, description = "the policy", body = RetentionPolicy)))]
pub async fn get_retention(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RetentionPolicy>, ApiError> {
    caller.require(&state, Action::RetentionView).await?;
    Ok(Json(state.retention().policy()))
}

/// Replaces the retention schedules and legal holds.
#[utoipa::path(put, path = "/v1/retention", tag = "admin", request_body = RetentionPolicy,
    responses(
        (status = 200, description = "saved", body = RetentionPolicy),
        (status = 400, description = "a schedule that cannot work", body = ErrorBody),
    ))]
pub async fn put_retention(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<RetentionPolicy>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RetentionPolicy>, ApiError> {
    caller.require(&state, Action::RetentionSet).await?;
    let Json(policy) = body?;
    // Record holds are kept, shown and logged by the record's ref, never by its id.
    let policy = policy.with_record_refs(|id| state.audit().record_ref(id));
    let state2 = state.clone();
    let p2 = policy.clone();
    let result = blocking(move || state2.retention().set_policy(p2).map_err(retention_error)).await;
    let mut entry = caller.entry(Action::RetentionSet);
    entry.detail = Some(match &result {
        Ok(()) => serde_json::to_value(&policy).map_err(ApiError::internal)?,
        Err(e) => serde_json::json!({
            "status": e.status().as_u16(),
            "error": e.message().chars().take(500).collect::<String>(),
        }),
    });
    if let Err(e) = &result {
        entry.outcome = if e.status().is_server_error() {
            "error".into()
        } else {
            "refused".into()
        };
    }
    caller.write(&state, entry).await?;
    result?;
    Ok(Json(policy))
}

/// A policy that cannot be saved is the request's fault (400); a saved policy that cannot be
/// run is the library's state (409, see [`run_retention`]).
fn retention_error(e: RetentionError) -> ApiError {
    match e {
        RetentionError::InvalidSchedule { .. } | RetentionError::InvalidHold { .. } => {
            ApiError::invalid(e.to_string())
        }
        other => ApiError::internal(other),
    }
}

/// A retention run.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionRun {
    /// Only say what would be deleted.
    pub dry_run: bool,
}

/// What a retention run did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionOutcome {
    /// What was due.
    pub plan: Plan,
    /// The deletion receipt (absent on a dry run or when nothing was due).
    pub receipt: Option<DeletionReceipt>,
}

/// Disposes of every record past its schedule (holds excepted), or says what would go.
#[utoipa::path(post, path = "/v1/retention/run", tag = "admin", request_body = RetentionRun,
    responses(
        (status = 200, description = "the plan and the receipt", body = RetentionOutcome),
        (status = 409, description = "the saved policy is out of range", body = ErrorBody),
    ))]
pub async fn run_retention(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<RetentionRun>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RetentionOutcome>, ApiError> {
    caller.require(&state, Action::RetentionRun).await?;
    let Json(run) = body?;
    let state2 = state.clone();
    let plan = blocking(move || {
        let audit = state2.audit();
        state2
            .retention()
            .due(state2.service().library(), Utc::now(), |id| {
                audit.record_ref(id)
            })
            .map_err(|e| match e {
                RetentionError::InvalidSchedule { .. } | RetentionError::InvalidHold { .. } => {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "invalid_policy",
                        format!(
                            "the saved retention policy cannot be run; correct it with \
                             PUT /v1/retention: {e}"
                        ),
                    )
                }
                other => ApiError::internal(other),
            })
    })
    .await?;
    let mut entry = caller.entry(Action::RetentionRun);
    entry.detail = Some(serde_json::json!({
        "dry_run": run.dry_run, "due": plan.due.len(), "held": plan.held,
    }));
    caller.write(&state, entry).await?;
    let receipt = if run.dry_run || plan.due.is_empty() {
        None
    } else {
        let ids = plan.due.iter().map(|d| d.id.clone()).collect();
        Some(run_delete(&state, &caller, ids, "retention schedule".into()).await?)
    };
    Ok(Json(RetentionOutcome { plan, receipt }))
}
