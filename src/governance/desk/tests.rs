use super::*;
use crate::governance::accounts::Principal;

const PASSWORD: &str = "a long enough password";

fn setup() -> (tempfile::TempDir, Accounts, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let accounts = Accounts::open(dir.path()).unwrap();
    let audit = AuditLog::open(dir.path()).unwrap();
    (dir, accounts, audit)
}

fn signed_in(accounts: &Accounts, name: &str) -> Actor {
    let info = accounts.get(name).unwrap();
    Actor::account(
        Principal {
            account: info.name,
            role: info.role,
            token: None,
        },
        None,
        None,
    )
}

fn all(audit: &AuditLog) -> Vec<AuditEntry> {
    audit.query(&AuditQuery::default()).unwrap()
}

#[test]
fn the_first_account_must_be_an_admin_and_later_ones_need_the_permission() {
    let (_dir, accounts, audit) = setup();
    let local = Actor::local("root", None);
    let desk = Desk::new(&accounts, &audit, &local);
    assert!(matches!(
        desk.create_account("ann", PASSWORD, Role::Searcher),
        Err(AdminError::FirstNotAdmin)
    ));
    desk.create_account("ann", PASSWORD, Role::Admin).unwrap();
    desk.create_account("bob", PASSWORD, Role::Searcher)
        .unwrap();

    let bob = signed_in(&accounts, "bob");
    let err = Desk::new(&accounts, &audit, &bob)
        .create_account("eve", PASSWORD, Role::Admin)
        .unwrap_err();
    assert_eq!((err.code(), err.fault()), ("forbidden", Fault::User));
    assert!(accounts.get("eve").is_err());

    let trail = all(&audit);
    let shapes: Vec<_> = trail
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("cli:root", "account_create", "ok"),
            ("cli:root", "account_create", "ok"),
            ("bob", "account_create", "denied"),
        ]
    );
    assert_eq!(trail[0].detail.as_ref().unwrap()["bootstrap"], true);
    assert_eq!(trail[1].detail.as_ref().unwrap()["bootstrap"], false);
}

#[test]
fn a_refused_change_is_recorded_with_its_code_and_changes_nothing() {
    let (_dir, accounts, audit) = setup();
    let local = Actor::local("root", None);
    let desk = Desk::new(&accounts, &audit, &local);
    desk.create_account("ann", PASSWORD, Role::Admin).unwrap();
    let err = desk
        .update_account(
            "ann",
            &AccountUpdate {
                role: Some(Role::Searcher),
                ..AccountUpdate::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), "last_admin");
    assert_eq!(accounts.get("ann").unwrap().role, Role::Admin);
    let last = all(&audit).pop().unwrap();
    assert_eq!(last.outcome, "refused");
    let detail = last.detail.unwrap();
    assert_eq!(detail["code"], "last_admin");
    assert!(
        detail["error"]
            .as_str()
            .unwrap()
            .contains("last enabled admin")
    );
}

#[test]
fn a_retention_change_is_recorded_saved_or_refused() {
    use crate::governance::retention::Hold;
    let (dir, accounts, audit) = setup();
    let retention = Retention::open(dir.path()).unwrap();
    let local = Actor::local("root", None);
    let desk = Desk::new(&accounts, &audit, &local);
    let hold = |reason: &str| Hold {
        reason: reason.into(),
        by: "root".into(),
        since: Utc::now(),
    };
    let detail = serde_json::json!({ "dataset": "d", "reason": "case 1" });
    desk.change_retention(&retention, Action::LegalHold, vec![], detail.clone(), |p| {
        p.dataset_holds.insert("d".into(), hold("case 1"));
    })
    .unwrap();
    let err = desk
        .change_retention(
            &retention,
            Action::LegalHold,
            vec!["r".into()],
            detail,
            |p| {
                p.dataset_holds.insert("e".into(), hold(" "));
            },
        )
        .unwrap_err();
    assert_eq!((err.code(), err.fault()), ("invalid", Fault::User));
    let held: Vec<_> = retention.policy().dataset_holds.into_keys().collect();
    assert_eq!(held, ["d"], "a refused change changes nothing");

    let trail = all(&audit);
    let [saved, refused] = &trail[..] else {
        panic!("two entries: {trail:?}")
    };
    assert_eq!(
        (saved.action.as_str(), saved.outcome.as_str()),
        ("legal_hold", "ok")
    );
    assert_eq!(saved.detail.as_ref().unwrap()["reason"], "case 1");
    assert_eq!(refused.outcome, "refused");
    assert_eq!(refused.records, [audit.record_ref("r")]);
    let detail = refused.detail.as_ref().unwrap();
    assert_eq!(detail["code"], "invalid");
    assert!(
        detail["error"].as_str().unwrap().contains("hold"),
        "{detail}"
    );
}

#[test]
fn tokens_of_others_need_the_permission_and_unknown_ids_read_alike() {
    let (_dir, accounts, audit) = setup();
    let local = Actor::local("root", None);
    let desk = Desk::new(&accounts, &audit, &local);
    desk.create_account("ann", PASSWORD, Role::Admin).unwrap();
    desk.create_account("bob", PASSWORD, Role::Searcher)
        .unwrap();
    assert!(matches!(
        desk.issue_token(None, "t", 1),
        Err(AdminError::NoAccount)
    ));
    let anns = desk.issue_token(Some("ann"), "t", 1).unwrap();

    let bob = signed_in(&accounts, "bob");
    let bobs_desk = Desk::new(&accounts, &audit, &bob);
    let own = bobs_desk.issue_token(None, "mine", 7).unwrap();
    assert_eq!(own.token.account, "bob");
    assert_eq!(bobs_desk.tokens().len(), 1);
    assert!(matches!(
        bobs_desk.issue_token(Some("ann"), "x", 1),
        Err(AdminError::Refused(_))
    ));
    // Another account's token and an unknown id: the same refusal.
    for id in [anns.token.id.as_str(), "000000000000"] {
        assert_eq!(bobs_desk.revoke_token(id).unwrap_err().code(), "forbidden");
    }
    bobs_desk.revoke_token(&own.token.id).unwrap();
    assert_eq!(
        desk.revoke_token("000000000000").unwrap_err().code(),
        "not_found"
    );
    assert_eq!(desk.tokens().len(), 2);
}

#[test]
fn an_audit_query_is_recorded_with_the_record_as_its_ref() {
    let (_dir, accounts, audit) = setup();
    let local = Actor::local("root", None);
    let desk = Desk::new(&accounts, &audit, &local);
    let q = AuditQuery {
        record: Some("secret-record-id".into()),
        ..AuditQuery::default()
    };
    desk.query_audit(&q).unwrap();
    let last = all(&audit).pop().unwrap();
    assert_eq!(last.action, "audit_query");
    let logged = last.query.unwrap();
    assert_eq!(logged["record"], audit.record_ref("secret-record-id"));
    assert!(!logged.to_string().contains("secret-record-id"));
}
