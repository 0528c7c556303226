//! The fault matrix: every row of `shared/design/faults.md` §3 that applies to the client, and
//! every "the test server must refuse" row, as a named case run on each transport × protocol
//! pair it applies to.
//!
//! Each case runs alone on a fresh runtime with a deadline. It passes when its own assertions
//! hold, it ends before the deadline, and afterwards every task it started has ended and the
//! process has no more sockets open than before (no leaked task, socket or timer).
//! The one test prints a line per case and `fault matrix: N passed, N failed`.
//!
//! `FAULT_MATRIX=handshake cargo test -p signalr-client --test matrix -- --nocapture` runs the
//! cases whose name contains `handshake`.
#![allow(clippy::unwrap_used)] // a case that fails panics: the runner reports it

mod cases;
mod support;

use std::{
    any::Any,
    future::Future,
    pin::Pin,
    time::{Duration, Instant},
};

use support::Pair;

/// A scenario on one pair; it panics (asserts) when the behaviour is wrong.
type Run = fn(Pair) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// One row of the matrix.
pub(crate) struct Case {
    /// The faults.md row (`3.11`) or `S.n` for a row the server must refuse.
    pub(crate) row: &'static str,
    pub(crate) name: &'static str,
    pub(crate) pairs: &'static [Pair],
    pub(crate) run: Run,
}

/// Whatever a case does, it ends within this.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long the tasks and sockets of a finished case may take to wind down.
const SETTLE: Duration = Duration::from_secs(5);

/// Open sockets (TCP, and any Unix socket a library makes). Only sockets: a library may keep a
/// file open for the process's life once it first needs it (`/dev/urandom` where the
/// `getrandom` call is refused, a resolver's files), which is no leak of the case's.
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| {
        dir.filter_map(Result::ok)
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    })
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

#[allow(clippy::disallowed_methods)] // wall time for the report only
pub(crate) fn wall() -> Instant {
    Instant::now()
}

/// Runs one case on one pair; `Err` says what went wrong.
fn run_one(case: &Case, pair: Pair) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let sockets = open_sockets();
    let outcome = rt.block_on(async {
        let task = tokio::spawn((case.run)(pair));
        let abort = task.abort_handle();
        match tokio::time::timeout(DEADLINE, task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.is_panic() => Err(panic_text(&*e.into_panic())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                abort.abort();
                Err(format!("still running after {DEADLINE:?}"))
            }
        }
    });
    outcome?;
    // Back to the baseline: no task left running, no socket left open.
    rt.block_on(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let since = wall();
        loop {
            let (tasks, now) = (metrics.num_alive_tasks(), open_sockets());
            if tasks == 0 && now <= sockets {
                return Ok(());
            }
            if since.elapsed() > SETTLE {
                return Err(format!(
                    "after the case: {tasks} tasks still alive, {now} sockets open (was {sockets})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Panics that a case causes on purpose (a handler that panics, to check that the server gets
/// an error Completion) say "(expected)"; they are not printed, so that a real failure's panic
/// and backtrace are the only ones in the log.
fn quiet_expected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !panic_text(info.payload()).contains("(expected)") {
            default(info);
        }
    }));
}

#[test]
fn fault_matrix() {
    support::logs();
    quiet_expected_panics();
    let filter = std::env::var("FAULT_MATRIX").unwrap_or_default();
    let (mut passed, mut failed) = (0, Vec::new());
    for case in cases::all() {
        if !format!("{} {}", case.row, case.name).contains(filter.as_str()) {
            continue;
        }
        for &pair in case.pairs {
            // On stderr first: if the process dies mid-case, the log's last line names it.
            eprintln!("start  {} {} [{pair}]", case.row, case.name);
            let started = wall();
            let result = run_one(&case, pair);
            let took = started.elapsed().as_secs_f64();
            let label = format!("{:>4} {} [{pair}]", case.row, case.name);
            match result {
                Ok(()) => {
                    passed += 1;
                    println!("ok     {label} {took:.2} s");
                }
                Err(e) => {
                    println!("FAILED {label} {took:.2} s: {e}");
                    eprintln!("FAILED {label} {took:.2} s: {e}");
                    failed.push(format!("{label}: {e}"));
                }
            }
        }
    }
    println!("fault matrix: {passed} passed, {} failed", failed.len());
    assert!(passed > 0 || !filter.is_empty(), "no case ran");
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}
