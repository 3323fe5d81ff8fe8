//! Ctrl-C, SIGTERM and SIGHUP: the run stops, removes what it had written (the interrupt list
//! of `partial`; `--no-rm` keeps its directory), says so in one line and exits with 130, 143 or
//! 129.
//!
//! The signal handler only writes the signal's number to a pipe: that is all a handler may
//! safely do. A watcher thread reads the pipe, raises the flag the transfer loops check (so the
//! other threads stop writing within a buffer), undoes the interrupt list and exits. Waiting
//! for the loops alone would not do: a read stalled on a dead connection notices nothing until
//! its timeout. No async runtime, no signal mask: child programs (git, credential helpers) get
//! default signal handling back when they start.

use crate::partial;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

static WRITE_END: AtomicI32 = AtomicI32::new(-1);
static STOP: AtomicBool = AtomicBool::new(false);

const SIGNALS: [(libc::c_int, &str); 3] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
];

/// Whether the run was interrupted: loops that write stop when it is.
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WRITE_END.load(Ordering::Relaxed);
    let byte = signal as u8;
    // write(2) is async-signal-safe; a full pipe only means a signal is already pending.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// Installs the handlers and starts the watcher. Without a pipe (out of descriptors) the
/// default handling stays: the process dies and the next run cleans up after it.
pub fn install() {
    let mut fds = [0 as libc::c_int; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    WRITE_END.store(fds[1], Ordering::Relaxed);
    let read_end = fds[0];
    if std::thread::Builder::new()
        .name("interrupt".into())
        .stack_size(64 * 1024)
        .spawn(move || watch(read_end))
        .is_err()
    {
        return;
    }
    for (signal, _) in SIGNALS {
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            // SA_RESTART: other threads' system calls carry on undisturbed.
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

fn watch(read_end: libc::c_int) {
    let mut byte = 0u8;
    loop {
        let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
    let signal = libc::c_int::from(byte);
    let name = SIGNALS
        .iter()
        .find(|(s, _)| *s == signal)
        .map_or("a signal", |(_, n)| n);
    STOP.store(true, Ordering::SeqCst);
    // Let the loops see the flag and stop writing into what is about to be removed.
    std::thread::sleep(Duration::from_millis(200));
    let left = partial::undo_interrupted();
    let mut line = format!("dockersave: interrupted by {name}; removed what this run had written");
    for note in left {
        line.push_str("; ");
        line.push_str(&note);
    }
    eprintln!("\n{line}");
    std::process::exit(128 + signal);
}
