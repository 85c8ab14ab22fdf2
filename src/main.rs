//! The `vla-demo` binary: parse the command line, hand off to the library,
//! and turn any error into one `error:` line and exit code 2. Standard output
//! closed by its reader ends the run quietly with exit 0 (src/output.rs).

use std::process::ExitCode;

use vla_demo::output;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() -> ExitCode {
    // candle re-reads /proc/cpuinfo on every matmul unless this is set,
    // and it must be set before any thread starts.
    vla_demo::device::pin_thread_count();
    let result = output::install_signal_cleanup().and_then(|()| cli::main());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<output::ClosedStdout>() => ExitCode::SUCCESS,
        Err(e) => {
            output::eprint_line(&output::error_line(&e));
            ExitCode::from(2)
        }
    }
}
