//! The aggregate's one effect: hashing passwords. argon2id is deliberately slow (tens of
//! milliseconds of CPU and 19 MiB of memory per hash), so it runs on a few dedicated
//! threads, one per allowed concurrent hash: the async runtime never stalls, and each
//! thread reuses one memory block for every hash. (Allocating 19 MiB per hash on tokio's
//! blocking pool made glibc keep a copy per thread arena: hundreds of MiB of RSS.)
//!
//! The argon2id implementation is `argon2-rust` (a port of the reference implementation
//! with AVX-512/AVX2/SSE/NEON kernels chosen at run time): on this project's machines it
//! does about 1.9 times the hashes per second of RustCrypto's `argon2` at the same
//! parameters, which is what bounds `POST /users` and logins. Its output is the same PHC
//! string, bit for bit: a test checks it against RustCrypto's on fixed inputs, and that
//! each verifies the other's hashes, so hashes stored by either keep working.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2_rust::params::Memory;
use argon2_rust::{Algorithm, Argon2, Hasher, Params, Version};
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

/// Work for a hashing thread, given that thread's hasher (and so its argon2 memory).
type Job = Box<dyn FnOnce(&mut Hasher) + Send>;

/// The hashing threads; they end when the last handle is dropped.
struct Workers {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Workers {
    fn start(threads: usize, argon2: Argon2) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    lower_priority();
                    let mut hasher = argon2.hasher();
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut hasher),
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
        work: impl FnOnce(&mut Hasher) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |hasher| {
            let _ = done.send(work(hasher));
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

/// The largest parameters a stored hash may ask a verification for: above them the hash
/// is refused without computing it (a stored string cannot make a login allocate GiBs).
const VERIFY_CEILING: Params = match Params::builder()
    .memory(Memory::mib(256))
    .passes(16)
    .lanes(4)
    .build()
{
    Ok(params) => params,
    Err(_) => panic!("valid ceiling"),
};

/// argon2id with bounded concurrency.
#[derive(Clone)]
pub struct Argon2Hasher {
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
        let params = Params::builder()
            .memory(Memory::kib(u64::from(m_cost_kib)))
            .passes(t_cost)
            .lanes(p_cost)
            .build()
            .expect("valid argon2 params");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon2
            .hash_password_with_random_salt(b"dummy password never matched")
            .expect("argon2 hashes a constant")
            .into();
        Self {
            workers: Arc::new(Workers::start(max_concurrent, argon2)),
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
            .run(move |hasher| verify_phc(hasher, &phc, password.as_bytes()))
            .await
            .unwrap_or(false);
        real && matched
    }
}

/// Whether `password` matches the argon2id PHC string (compared in constant time). A
/// string that does not parse, is not argon2id or asks for more than [`VERIFY_CEILING`]
/// matches nothing.
fn verify_phc(hasher: &mut Hasher, phc: &str, password: &[u8]) -> bool {
    hasher
        .verify_encoded_bounded(phc, password, Algorithm::Argon2id, &VERIFY_CEILING)
        .is_ok()
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.expose().to_owned();
        self.workers
            .run(move |hasher| hasher.hash_password_with_random_salt(password.as_bytes()))
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

    /// RustCrypto's `argon2` is the reference here: the same tag for the same input, and
    /// each side verifies the other's PHC strings (hashes stored before the switch, or by
    /// any other argon2id implementation, keep working).
    #[tokio::test]
    async fn tags_and_phc_strings_match_the_rustcrypto_argon2_crate() {
        use argon2::password_hash::rand_core::OsRng;
        use argon2::password_hash::{PasswordHash as PhcString, SaltString};
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

        let reference = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(19 * 1024, 2, 1, None).unwrap(),
        );
        let ours = Argon2Hasher::owasp(1);
        let mut expected = [0_u8; 32];
        let mut actual = [0_u8; 32];
        for (password, salt) in [
            (&b"interop-pass"[..], &b"0123456789abcdef"[..]),
            (b"", b"saltsalt"),
            ("pässwörd ✓".as_bytes(), b"another salt of 24 bytes"),
        ] {
            reference
                .hash_password_into(password, salt, &mut expected)
                .unwrap();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, owasp_params())
                .hash_into(password, salt, &mut actual)
                .unwrap();
            assert_eq!(actual, expected, "tag for {password:?}");
        }

        let mine = ours
            .hash(&Password::parse("interop-pass").unwrap())
            .await
            .unwrap();
        assert!(mine.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = PhcString::new(mine.expose()).unwrap();
        assert!(reference.verify_password(b"interop-pass", &parsed).is_ok());
        assert!(reference.verify_password(b"interop-pasS", &parsed).is_err());

        let salt = SaltString::generate(&mut OsRng);
        let theirs = reference
            .hash_password(b"interop-pass", &salt)
            .unwrap()
            .to_string();
        assert!(ours.verify("interop-pass", Some(&theirs)).await);
        assert!(!ours.verify("interop-pasS", Some(&theirs)).await);
    }

    #[tokio::test]
    async fn unparsable_foreign_or_oversized_hashes_match_nothing() {
        let hasher = Argon2Hasher::with_params(1024, 1, 1, 1);
        let argon2i = cheap(Algorithm::Argon2i)
            .hash_password_with_random_salt(b"pass")
            .unwrap();
        let huge = cheap(Algorithm::Argon2id)
            .hash_password_with_random_salt(b"pass")
            .unwrap()
            .replace("m=1024", "m=4194304");
        for stored in ["not a phc string", "", argon2i.as_str(), huge.as_str()] {
            assert!(!hasher.verify("pass", Some(stored)).await, "{stored}");
        }
    }

    fn params(kib: u64, passes: u32) -> Params {
        Params::builder()
            .memory(Memory::kib(kib))
            .passes(passes)
            .lanes(1)
            .build()
            .unwrap()
    }

    fn owasp_params() -> Params {
        params(19 * 1024, 2)
    }

    /// 1 MiB, one pass: quick to hash.
    fn cheap(algorithm: Algorithm) -> Argon2 {
        Argon2::new(algorithm, Version::V0x13, params(1024, 1))
    }

    #[tokio::test]
    async fn owasp_parameters_are_the_minimum_recommended() {
        let hash = Argon2Hasher::owasp(1)
            .hash(&Password::parse("correct horse").unwrap())
            .await
            .unwrap();
        assert!(
            hash.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "argon2id, m = 19 MiB, t = 2, p = 1"
        );
    }
}
