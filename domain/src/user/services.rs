//! The aggregate's one effect: hashing passwords. argon2id is deliberately slow (tens of
//! milliseconds of CPU and 19 MiB of memory per hash), so it runs on a few dedicated
//! threads, one per allowed concurrent hash: the async runtime never stalls, and each
//! thread reuses one memory block for every hash. (Allocating 19 MiB per hash on tokio's
//! blocking pool made glibc keep a copy per thread arena: hundreds of MiB of RSS.)

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash as PhcString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;

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

/// Work for a hashing thread, given that thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The hashing threads; they end when the last handle is dropped.
struct Workers {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Workers {
    fn start(threads: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    lower_priority();
                    let mut memory = Vec::new();
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return, // every handle dropped
                        }
                    }
                })
                .expect("spawn a hashing thread");
        }
        Self {
            jobs: Mutex::new(sender),
        }
    }

    /// Runs `work` on a hashing thread (queued behind the hashes already running).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(work(memory));
        });
        self.jobs
            .lock()
            .map_err(|_| HashError)?
            .send(job)
            .map_err(|_| HashError)?;
        result.await.map_err(|_| HashError)
    }
}

/// Makes the calling thread yield the CPU to the request-serving threads: hashing is a
/// throughput job, and a storm of creates must not stretch every other request's latency.
/// (Linux keeps a nice value per thread.)
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its integer arguments; `who = 0` is this thread.
        // If it fails, the thread keeps normal priority: slower requests, nothing worse.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICENESS) };
    }
}

/// The nice value of hashing threads (0 is normal, 19 the lowest).
#[cfg(target_os = "linux")]
const HASHING_NICENESS: libc::c_int = 10;

/// argon2id with bounded concurrency.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    workers: Arc<Workers>,
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
        let dummy_hash = hash_phc(&params, b"dummy password never matched", &mut Vec::new())
            .expect("argon2 hashes a constant")
            .into();
        Self {
            params,
            workers: Arc::new(Workers::start(max_concurrent)),
            dummy_hash,
        }
    }

    /// Checks `password` against a stored PHC string, or against the dummy hash when there
    /// is none, taking the same time either way. Returns `true` only for a real match.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let real = stored.is_some();
        let phc = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let matched = self
            .workers
            .run(move |memory| verify_phc(&phc, password.as_bytes(), memory))
            .await
            .unwrap_or(false);
        real && matched
    }
}

/// The raw argon2id output of `password` and `salt`, computed in `memory` (grown as needed).
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    memory: &mut Vec<Block>,
) -> argon2::password_hash::Result<Output> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    Output::init_with(length, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])?)
    })
}

/// A new PHC string (`$argon2id$v=19$m=…`) for `password` with a random salt.
fn hash_phc(
    params: &Params,
    password: &[u8],
    memory: &mut Vec<Block>,
) -> argon2::password_hash::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0_u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let output = compute(
        Algorithm::Argon2id,
        Version::V0x13,
        params,
        password,
        salt_bytes,
        memory,
    )?;
    Ok(PhcString {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: params.try_into()?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Whether `password` matches the PHC string (compared in constant time).
fn verify_phc(phc: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let mut check = || -> argon2::password_hash::Result<bool> {
        let parsed = PhcString::new(phc)?;
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        let salt = parsed
            .salt
            .ok_or(argon2::password_hash::Error::SaltInvalid(
                argon2::password_hash::errors::InvalidValue::Malformed,
            ))?;
        let mut salt_bytes = [0_u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let computed = compute(algorithm, version, &params, password, salt_bytes, memory)?;
        Ok(parsed.hash == Some(computed))
    };
    check().unwrap_or(false)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.expose().to_owned();
        let params = self.params.clone();
        self.workers
            .run(move |memory| hash_phc(&params, password.as_bytes(), memory))
            .await?
            .map(PasswordHash::new)
            .map_err(|_| HashError)
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

    #[tokio::test]
    async fn hashes_verify_with_the_argon2_crate_and_the_other_way_round() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = Argon2Hasher::with_params(1024, 1, 1, 1);
        let ours = hasher
            .hash(&Password::parse("interop-pass").unwrap())
            .await
            .unwrap();
        let parsed = PhcString::new(ours.expose()).unwrap();
        assert!(Argon2::default()
            .verify_password(b"interop-pass", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"interop-pass", &salt)
            .unwrap()
            .to_string();
        assert!(hasher.verify("interop-pass", Some(&theirs)).await);
        assert!(!hasher.verify("interop-pasS", Some(&theirs)).await);
        assert!(
            !hasher
                .verify("interop-pass", Some("not a phc string"))
                .await
        );
    }

    #[test]
    fn owasp_parameters_are_the_minimum_recommended() {
        let hasher = Argon2Hasher::owasp(1);
        assert_eq!(hasher.params.m_cost(), 19 * 1024);
        assert_eq!(hasher.params.t_cost(), 2);
        assert_eq!(hasher.params.p_cost(), 1);
    }
}
