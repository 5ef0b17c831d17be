use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a request allocates and frees many small objects on
/// whichever worker thread polls it, which glibc served with arena locks and periodic
/// consolidation (about an eighth of the service's CPU under load, in `perf`), and its
/// per-thread arenas kept freed memory resident. mimalloc's thread-local free lists do
/// both better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime")
        .block_on(api::cli::run())
}
