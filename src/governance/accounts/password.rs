//! Passwords: the length rules, argon2id hashing with a random salt, verification, and the
//! dummy hash an unknown name is verified against.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore as _;

use super::{AccountError, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};

/// Verified instead of a real hash when the account does not exist, so a failed log-in takes as
/// long whether or not the name exists. Made with `Argon2::default()` (argon2id, m=19456, t=2,
/// p=1, the same cost as real hashes: a test checks it) from a password no account can have
/// (a fixed salt, so the hash is not any account's).
pub(super) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$aW1hZ2VsZW5zLWR1bW15IQ$LMpGN9IYQ0WivPLu60j4PGmKyNl5PYZLZgSYOpGlbI8";

pub(super) fn validate_password(password: &str) -> Result<(), AccountError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::WeakPassword(format!(
            "it has {} bytes, at most {MAX_PASSWORD_LEN} are allowed",
            password.len()
        )));
    }
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(AccountError::WeakPassword(format!(
            "it has {n} characters, at least {MIN_PASSWORD_LEN} are needed"
        )));
    }
    Ok(())
}

/// argon2id with the crate's default parameters and a random 16-byte salt, as a PHC string.
pub(super) fn hash_password(password: &str) -> String {
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
pub(super) fn check_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}
