//! The `imagelens` command. See `imagelens --help` and README.md.

// Many threads allocate and free small buffers at once under load (HTTP, BM25, the vector
// store's search): glibc's malloc spent about a tenth of the served process's time on it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    imagelens::cli::main()
}
