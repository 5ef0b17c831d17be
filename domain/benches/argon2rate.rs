//! Hashes per second of the service's argon2id (`argon2-rust`) and of RustCrypto's `argon2`
//! (what the shared baseline and its `argon2rate` use) at the service's parameters
//! (m = 19 MiB, t = 2, p = 1), each on THREADS threads for SECS seconds:
//!
//!     cargo bench -p domain --bench argon2rate -- [SECS [THREADS]]
//!
//! `bench/run` prints it beside the baseline's ceiling. Interleaved one after the other on
//! the same machine, so the ratio is meaningful even when the absolute figures drift.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;

fn rate(threads: usize, secs: f64, hash: impl Fn(&mut [u8; 32]) + Sync) -> f64 {
    let count = AtomicU64::new(0);
    let start = Instant::now();
    let until = Duration::from_secs_f64(secs);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut out = [0_u8; 32];
                while start.elapsed() < until {
                    hash(&mut out);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    count.into_inner() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; only numbers are ours.
    let numbers: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let secs = numbers.first().copied().unwrap_or(5.0);
    let threads = numbers.get(1).map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |t| *t as usize,
    );
    let (password, salt) = (b"bench-password", b"0123456789abcdef");

    let ours = argon2_rust::Argon2::new(
        argon2_rust::Algorithm::Argon2id,
        argon2_rust::Version::V0x13,
        argon2_rust::Params::builder()
            .memory(argon2_rust::params::Memory::kib(u64::from(M_COST_KIB)))
            .passes(T_COST)
            .lanes(1)
            .build()
            .expect("valid parameters"),
    );
    let reference = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(M_COST_KIB, T_COST, 1, None).expect("valid parameters"),
    );

    println!("argon2id v19 m={M_COST_KIB} KiB t={T_COST} p=1, {threads} threads, {secs} s each");
    let service = rate(threads, secs, |out| {
        ours.hash_into(password, salt, out).expect("hash");
    });
    println!(
        "argon2-rust {} (the service): {service:.1} hashes/s",
        backend()
    );
    let rustcrypto = rate(threads, secs, |out| {
        reference
            .hash_password_into(password, salt, out)
            .expect("hash");
    });
    println!("RustCrypto argon2 (the baseline's): {rustcrypto:.1} hashes/s");
    println!("ratio: {:.2}x", service / rustcrypto);
}

fn backend() -> String {
    format!("{:?}", argon2_rust::detected_backend())
}
