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
fn a_refused_change_leaves_the_account_exactly_as_it_was() {
    let (_dir, accounts) = open();
    accounts.create("root", PW, Role::Admin).unwrap();
    // Demoting the last admin is refused, and the new password in the same change is not
    // applied either.
    let change = AccountUpdate {
        role: Some(Role::Searcher),
        password: Some("changed-password-999".into()),
        disabled: None,
    };
    assert!(matches!(
        accounts.change("root", &change),
        Err(AccountError::LastAdmin)
    ));
    assert!(accounts.verify_password("root", PW).is_ok());
    assert!(
        accounts
            .verify_password("root", "changed-password-999")
            .is_err()
    );
    // A weak password refuses the role and state change that came with it.
    accounts.create("bob", PW, Role::Searcher).unwrap();
    let change = AccountUpdate {
        role: Some(Role::Auditor),
        password: Some("short".into()),
        disabled: Some(true),
    };
    assert!(matches!(
        accounts.change("bob", &change),
        Err(AccountError::WeakPassword(_))
    ));
    let bob = accounts.get("bob").unwrap();
    assert_eq!((bob.role, bob.disabled), (Role::Searcher, false));
    assert!(!format!("{change:?}").contains("short"));
    // A good change applies whole.
    let change = AccountUpdate {
        role: Some(Role::Auditor),
        password: Some("a brand new password".into()),
        disabled: Some(true),
    };
    let bob = accounts.change("bob", &change).unwrap();
    assert_eq!((bob.role, bob.disabled), (Role::Auditor, true));
    assert!(matches!(
        accounts.verify_password("bob", "a brand new password"),
        Err(AccountError::Disabled)
    ));
    // Megabyte passwords are refused before hashing.
    assert!(matches!(
        accounts.set_password("bob", &"x".repeat(MAX_PASSWORD_LEN + 1)),
        Err(AccountError::WeakPassword(_))
    ));
}

#[test]
fn a_token_issues_tokens_no_longer_lived_than_itself() {
    let (_dir, accounts) = open();
    accounts.create("ci", PW, Role::Searcher).unwrap();
    let (_, own) = accounts.issue_token("ci", "t", Duration::days(5)).unwrap();
    let by_token = Principal {
        account: "ci".into(),
        role: Role::Searcher,
        token: Some(own.id.clone()),
    };
    let (_, t, cap) = accounts
        .issue_token_by(&by_token, "ci", "long", Duration::days(366))
        .unwrap();
    assert_eq!(cap, Some(own.expires));
    assert_eq!(t.expires, own.expires);
    let (_, t, cap) = accounts
        .issue_token_by(&by_token, "ci", "short", Duration::days(1))
        .unwrap();
    assert_eq!(cap, None);
    assert!(t.expires < own.expires);
    // Out-of-range lifetimes are refused as before, capped or not.
    assert!(matches!(
        accounts.issue_token_by(&by_token, "ci", "x", Duration::days(367)),
        Err(AccountError::InvalidTtl(_))
    ));
    // A password sign-in may issue up to the maximum.
    let by_password = Principal {
        token: None,
        ..by_token.clone()
    };
    let (_, t, cap) = accounts
        .issue_token_by(&by_password, "ci", "yearly", Duration::days(366))
        .unwrap();
    assert_eq!(cap, None);
    assert!(t.expires - t.created == Duration::days(366));
    // A token about to expire can issue nothing.
    let (_, dying) = accounts
        .issue_token("ci", "dying", Duration::minutes(1))
        .unwrap();
    let by_dying = Principal {
        token: Some(dying.id),
        ..by_token
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(matches!(
        accounts.issue_token_by(&by_dying, "ci", "x", Duration::days(1)),
        Err(AccountError::CallerTokenExpiring(_))
    ));
}

#[test]
fn the_throttle_blocks_a_key_after_the_limit_until_the_window_passes() {
    let t = SignInThrottle::new(3, std::time::Duration::from_secs(60));
    let start = Instant::now();
    let keys = ["account:ada".to_owned(), "address:10.0.0.1".to_owned()];
    assert!(t.blocked_at(&keys, start).is_none());
    assert!(!t.fail_at(&keys, start));
    assert!(!t.fail_at(&keys[..1], start));
    assert!(t.fail_at(&keys[..1], start + std::time::Duration::from_secs(10)));
    // The account is blocked until its oldest failure is a minute old; the address is not.
    let wait = t
        .blocked_at(&keys[..1], start + std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(wait, std::time::Duration::from_secs(30));
    assert!(t.blocked_at(&keys[1..], start).is_none());
    assert!(
        t.blocked_at(&keys[..1], start + std::time::Duration::from_secs(60))
            .is_none()
    );
    t.fail_at(&keys[..1], start);
    t.clear("account:ada");
    assert!(t.blocked_at(&keys, start).is_none());
}

#[test]
fn credentials_parse_without_keeping_secrets_in_debug_or_the_claimed_name() {
    let c = Credentials::parse(&basic("ada", "hunter2-secret"));
    assert_eq!(c.claimed(), "ada");
    assert_eq!(c.account_key().as_deref(), Some("account:ada"));
    assert!(!format!("{c:?}").contains("hunter2"));
    let long = "n".repeat(1_000);
    let c = Credentials::parse(&basic(&long, "pw"));
    assert!(c.claimed().len() <= MAX_NAME_LEN + 3);
    let c = Credentials::parse("Bearer il_0123456789ab_secretpart");
    assert_eq!(c.claimed(), "token:0123456789ab");
    assert!(!format!("{c:?}").contains("secretpart"));
    assert_eq!(Credentials::parse("Digest x").claimed(), "unknown");
    assert_eq!(
        address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
        "address:2001:db8:1:2::/64"
    );
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
