//! The `imagelens` command. See `imagelens --help` and README.md.

fn main() -> std::process::ExitCode {
    imagelens::cli::main()
}
