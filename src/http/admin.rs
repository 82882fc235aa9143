//! Administration: accounts and tokens, the audit trail, retention, and deletion with receipts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorBody, Permission, blocking};
use crate::governance::accounts::{AccountInfo, AccountUpdate, Principal, Role, TokenInfo};
use crate::governance::audit::{AuditEntry, AuditQuery, VerifyReport};
use crate::governance::deletion::{self, DeletionReceipt};
use crate::governance::retention::{Plan, RetentionPolicy};
use crate::governance::{self, Action, DEFAULT_TOKEN_DAYS, IssuedToken};

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
        let stores = state2.app().deletion_stores().map_err(ApiError::internal)?;
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
    q: ApiQuery<ReasonQuery>,
) -> Result<Json<DeletionReceipt>, ApiError> {
    caller.require(&state, Action::Delete).await?;
    let q = q.parsed()?;
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
    body: ApiJson<DeletionRequest>,
) -> Result<Json<DeletionReceipt>, ApiError> {
    caller.require(&state, Action::Delete).await?;
    let body = body.parsed()?;
    let reason = reason_of(Some(body.reason))?;
    let service = state.service().clone();
    let ids = blocking(move || {
        let library = service.library();
        Ok(governance::records_to_delete(
            library,
            body.ids,
            body.dataset.as_deref(),
        )?)
    })
    .await?;
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
        (status = 200, description = "matching entries, oldest first (newest first with newest_first=true)", body = AuditEntries),
        (status = 400, description = "a bad parameter", body = ErrorBody),
    ))]
pub async fn audit_query(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<AuditQuery>,
) -> Result<Json<AuditEntries>, ApiError> {
    caller.require(&state, Action::AuditQuery).await?;
    let q = q.parsed()?;
    if q.limit.is_some_and(|l| l == 0 || l > MAX_AUDIT_PAGE) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_AUDIT_PAGE}"
        )));
    }
    let entries = caller
        .desk(&state, move |desk| desk.query_audit(&q))
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
    let report = blocking(move || state2.audit().verify().map_err(ApiError::from)).await?;
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
    let accounts = caller.desk(&state, |desk| desk.accounts()).await?;
    Ok(Json(AccountList { accounts }))
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
    body: ApiJson<NewAccount>,
) -> Result<(StatusCode, Json<AccountInfo>), ApiError> {
    caller.require(&state, Action::AccountCreate).await?;
    let body = body.parsed()?;
    let info = caller
        .desk(&state, move |desk| {
            desk.create_account(&body.name, &body.password, body.role)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
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
    body: ApiJson<AccountChange>,
) -> Result<Json<AccountInfo>, ApiError> {
    caller.require(&state, Action::AccountUpdate).await?;
    let body = body.parsed()?;
    // All or nothing: the whole change is checked before any of it is applied.
    let update = AccountUpdate {
        role: body.role,
        password: body.password,
        disabled: body.disabled,
    };
    let info = caller
        .desk(&state, move |desk| desk.update_account(&name, &update))
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
    caller
        .desk(&state, move |desk| desk.delete_account(&name))
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
    body: ApiJson<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let body = body.parsed()?;
    let issued = caller
        .desk(&state, move |desk| {
            let ttl_days = body.ttl_days.unwrap_or(DEFAULT_TOKEN_DAYS);
            desk.issue_token(body.account.as_deref(), &body.name, ttl_days)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(issued)))
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
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = caller.desk(&state, |desk| Ok(desk.tokens())).await?;
    Ok(Json(TokenList { tokens }))
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
    Json(who_am_i(&state, &caller.principal))
}

/// What [`whoami`] answers for `p`.
pub(crate) fn who_am_i(state: &AppState, p: &Principal) -> WhoAmI {
    let token = p.token.as_ref().and_then(|id| {
        state
            .accounts()
            .tokens(Some(&p.account))
            .into_iter()
            .find(|t| &t.id == id)
    });
    WhoAmI {
        account: p.account.clone(),
        role: p.role,
        permissions: Permission::ALL
            .iter()
            .filter(|perm| p.can(**perm))
            .map(|perm| perm.to_string())
            .collect(),
        token,
    }
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
    let info = caller
        .desk(&state, move |desk| desk.revoke_token(&id))
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
    body: ApiJson<RetentionPolicy>,
) -> Result<Json<RetentionPolicy>, ApiError> {
    caller.require(&state, Action::RetentionSet).await?;
    let policy = body.parsed()?;
    // Record holds are kept, shown and logged by the record's ref, never by its id.
    let policy = policy.with_record_refs(|id| state.audit().record_ref(id));
    let detail = serde_json::to_value(&policy).map_err(ApiError::internal)?;
    let (state2, saved) = (state.clone(), policy.clone());
    let result = caller
        .desk(&state, move |desk| {
            let changed = desk.change_retention(
                state2.retention(),
                Action::RetentionSet,
                Vec::new(),
                detail,
                |p| *p = saved,
            );
            // A policy that cannot be saved is the request's fault (400, `From<RetentionError>`),
            // not a saved policy that cannot be run (409, `From<AdminError>`).
            match changed {
                Err(governance::AdminError::Retention(e)) => Ok(Err(e)),
                other => other.map(Ok),
            }
        })
        .await?;
    result?;
    Ok(Json(policy))
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
    body: ApiJson<RetentionRun>,
) -> Result<Json<RetentionOutcome>, ApiError> {
    caller.require(&state, Action::RetentionRun).await?;
    let run = body.parsed()?;
    let state2 = state.clone();
    let plan = caller
        .desk(&state, move |desk| {
            let (retention, library) = (state2.retention(), state2.service().library());
            desk.plan_retention_run(retention, library, Utc::now(), run.dry_run)
        })
        .await?;
    let receipt = if run.dry_run || plan.due.is_empty() {
        None
    } else {
        let ids = plan.due.iter().map(|d| d.id.clone()).collect();
        Some(run_delete(&state, &caller, ids, "retention schedule".into()).await?)
    };
    Ok(Json(RetentionOutcome { plan, receipt }))
}
