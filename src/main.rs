//! The `vla-demo` binary: parse the command line, hand off to the library,
//! and turn any error into one `error:` line and a non-zero exit code.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() -> ExitCode {
    // candle re-reads /proc/cpuinfo on every matmul unless this is set.
    vla_demo::bench::sys::pin_thread_count();
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
