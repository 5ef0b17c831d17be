//! The aggregate's one effect: hashing passwords. argon2id is deliberately slow (tens of
//! milliseconds of CPU), so it runs on tokio's blocking pool behind a semaphore: at most one
//! hash per core at a time, and the async runtime never stalls.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash as PhcString, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier as _, Version};
use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::events::PasswordHash;
use super::values::Password;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;
}

/// What the `User` aggregate needs from the outside world.
#[derive(Clone)]
pub struct UserServices {
    pub hasher: Arc<dyn PasswordHasher>,
}

impl UserServices {
    pub fn new(hasher: Arc<dyn PasswordHasher>) -> Self {
        Self { hasher }
    }
}

/// argon2id with bounded concurrency.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Verified against when a login names no account, so that answer costs the same time
    /// as a wrong password.
    dummy_hash: Arc<str>,
}

impl Argon2Hasher {
    /// OWASP's recommendation for argon2id: m = 19 MiB, t = 2, p = 1.
    pub fn owasp(max_concurrent: usize) -> Self {
        Self::with_params(19 * 1024, 2, 1, max_concurrent)
    }

    pub fn with_params(m_cost_kib: u32, t_cost: u32, p_cost: u32, max_concurrent: usize) -> Self {
        let params = Params::new(m_cost_kib, t_cost, p_cost, None).expect("valid argon2 params");
        let salt = SaltString::generate(&mut OsRng);
        let dummy_hash = argon2(&params)
            .hash_password(b"dummy password never matched", &salt)
            .expect("argon2 hashes a constant")
            .to_string()
            .into();
        Self {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash,
        }
    }

    /// Checks `password` against a stored PHC string, or against the dummy hash when there
    /// is none, taking the same time either way. Returns `true` only for a real match.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let real = stored.is_some();
        let phc = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let params = self.params.clone();
        let matched = self
            .run_blocking(move || {
                PhcString::new(&phc).is_ok_and(|parsed| {
                    argon2(&params)
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await
            .unwrap_or(false);
        real && matched
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HashError)
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.expose().to_owned();
        let params = self.params.clone();
        self.run_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2(&params)
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| PasswordHash::new(hash.to_string()))
                .map_err(|_| HashError)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = Argon2Hasher::with_params(1024, 1, 1, 2);
        let hash = hasher
            .hash(&Password::parse("correct horse").unwrap())
            .await
            .unwrap();
        assert!(hash.expose().starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse", Some(hash.expose())).await);
        assert!(!hasher.verify("wrong horse!", Some(hash.expose())).await);
        assert!(!hasher.verify("correct horse", None).await);
    }

    #[test]
    fn owasp_parameters_are_the_minimum_recommended() {
        let hasher = Argon2Hasher::owasp(1);
        assert_eq!(hasher.params.m_cost(), 19 * 1024);
        assert_eq!(hasher.params.t_cost(), 2);
        assert_eq!(hasher.params.p_cost(), 1);
    }
}
