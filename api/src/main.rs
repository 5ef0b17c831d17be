use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime")
        .block_on(api::cli::run())
}

/// glibc gives every thread that allocates concurrently its own arena (up to 8 per core),
/// and each keeps freed memory for later: with request threads, hashing threads and the log
/// writer, resident memory grew past what the service uses. Two arenas are plenty here.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread
        // exists.
        let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
}
