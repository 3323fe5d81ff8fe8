//! What the user sees on stderr while a run works. Fed events (a message, bytes of a layer, a
//! layer's state, an HTTP request); owns no logic of the pull.
//!
//! On a terminal the layers' lines and a total line (rate, ETA) are redrawn in place, at most
//! ten times a second, cut to the terminal's width and height (a line that wrapped would break
//! the redraw); messages scroll above them. Otherwise there are no control sequences at all: a
//! line per message and per finished layer, as in a log. `--quiet` leaves errors only (main
//! prints those); `--verbose` adds a line per HTTP request — method, URL without its query
//! (which may carry a CDN's signature), status, size, time — and never a header, since headers
//! carry credentials.
//!
//! A program using the library may take the same events itself (`Progress::to`): then nothing is
//! written to stderr, and each event arrives as it happens, in order, on the thread that made it.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verbosity {
    Quiet,
    #[default]
    Normal,
    Verbose,
}

/// Where a layer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not started.
    Waiting,
    /// Bytes are arriving.
    Downloading,
    /// Every byte is in; digests are being checked, or it waits for its turn to be written.
    Verifying,
    /// Verified and written.
    Done,
    /// Taken from the cache, verified again.
    Cached,
    /// Pushing: the bytes go up (counted as they are read from the archive).
    Uploading,
    /// Pushing: the registry had the blob already, or mounted it from another repository.
    Present,
}

impl Step {
    fn word(self) -> &'static str {
        match self {
            Step::Waiting => "waiting",
            Step::Downloading => "downloading",
            Step::Verifying => "verifying",
            Step::Done => "done",
            Step::Cached => "cached",
            Step::Uploading => "uploading",
            Step::Present => "already there",
        }
    }
}

/// What happens during a run, as a program using the library receives it (`Progress::to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A line the command would print ("Pulling …", "  manifest sha256:…", "Saved …").
    Info(&'a str),
    /// A warning (the command prints it with `warning: ` before it).
    Warning(&'a str),
    /// The layers about to be fetched or pushed.
    Layers {
        /// How many; later events number them from 0.
        count: usize,
        /// Their bytes together, as the manifest gives them.
        bytes: u64,
    },
    /// More bytes of a layer arrived (or went up).
    Bytes {
        /// Which layer, from 0.
        layer: usize,
        /// How many more.
        bytes: u64,
    },
    /// A layer reached a step.
    Step {
        /// Which layer, from 0.
        layer: usize,
        /// Where it is now.
        step: Step,
    },
    /// Something happened to a layer, or to the run (a resume, a retry), said in a line.
    Note {
        /// Which layer, from 0, if it concerns one.
        layer: Option<usize>,
        /// What happened.
        text: &'a str,
    },
    /// A layer is done.
    Finished {
        /// Which layer, from 0.
        layer: usize,
        /// Its line, as the command prints it in a log.
        summary: &'a str,
    },
}

/// Where events go: the user's terminal or log (stderr), or a program's callback.
type Sink = Box<dyn Fn(&Event) + Send + Sync>;

pub struct Progress {
    verbosity: Verbosity,
    /// Whether stderr is a terminal, so lines can be redrawn.
    live: bool,
    state: Mutex<State>,
    /// A program's callback, which takes every event instead of stderr.
    sink: Option<Sink>,
}

struct State {
    layers: Vec<Layer>,
    /// Lines of the live area on the screen now (the cursor is on the line below them).
    drawn: usize,
    last_draw: Option<Instant>,
    /// When the first byte of a layer arrived, for the rate.
    first_byte: Option<Instant>,
}

struct Layer {
    short: String,
    total: u64,
    done: u64,
    step: Step,
    note: String,
}

const REDRAW: Duration = Duration::from_millis(100);

impl Progress {
    /// For stderr as it is: live redraws when it is a terminal.
    pub fn new(verbosity: Verbosity) -> Progress {
        Progress::with(verbosity, std::io::stderr().is_terminal())
    }

    pub fn with(verbosity: Verbosity, live: bool) -> Progress {
        Progress {
            verbosity,
            live: live && verbosity != Verbosity::Quiet,
            state: Mutex::new(State {
                layers: Vec::new(),
                drawn: 0,
                last_draw: None,
                first_byte: None,
            }),
            sink: None,
        }
    }

    /// Every event to `sink`, nothing to stderr. `--verbose`'s request lines are not events:
    /// they describe the transport, not the work.
    pub fn to(sink: impl Fn(&Event) + Send + Sync + 'static) -> Progress {
        Progress {
            sink: Some(Box::new(sink)),
            ..Progress::with(Verbosity::Quiet, false)
        }
    }

    /// Hands `event` to the program's callback; false when there is none (stderr then). One
    /// copy, not one inlined per event: the command never has a callback, and pays a call.
    #[inline(never)]
    fn sent(&self, event: Event) -> bool {
        match &self.sink {
            Some(sink) => {
                sink(&event);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::locks::lock(&self.state)
    }

    /// A line for the user ("Pulling …", "  manifest …").
    pub fn info(&self, text: &str) {
        if self.sent(Event::Info(text)) {
            return;
        }
        if self.verbosity != Verbosity::Quiet {
            self.print(text);
        }
    }

    /// A line for `--verbose` only.
    pub fn detail(&self, text: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.print(text);
        }
    }

    /// A warning: shown unless `--quiet`.
    pub fn warn(&self, text: &str) {
        if self.sent(Event::Warning(text)) {
            return;
        }
        self.info(&format!("warning: {text}"));
    }

    /// One HTTP request, for `--verbose`: its status, or `None` when no answer came. `url`
    /// loses its query here.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        status: Option<u16>,
        bytes: Option<u64>,
        took: Duration,
    ) {
        if self.verbosity != Verbosity::Verbose {
            return;
        }
        let shown = match url.split_once('?') {
            Some((path, _)) => format!("{path}?…"),
            None => url.to_string(),
        };
        let outcome = match status {
            Some(status) => {
                let size = bytes.map_or_else(|| "-".to_string(), size);
                format!("{status}, {size}")
            }
            None => "no answer".to_string(),
        };
        self.print(&format!(
            "  {method} {shown} → {outcome}, {} ms",
            took.as_millis()
        ));
    }

    /// The layers about to be fetched: (digest hex, size), in image order.
    pub fn layers(&self, layers: &[(String, u64)]) {
        let bytes = layers.iter().map(|(_, size)| size).sum();
        if self.sent(Event::Layers {
            count: layers.len(),
            bytes,
        }) || !self.live
        {
            return;
        }
        let mut state = self.lock();
        state.layers = layers
            .iter()
            .map(|(hex, total)| Layer {
                short: hex.chars().take(12).collect(),
                total: *total,
                done: 0,
                step: Step::Waiting,
                note: String::new(),
            })
            .collect();
        self.draw(&mut state, true);
    }

    /// `n` more bytes of layer `index` arrived.
    pub fn bytes(&self, index: usize, n: u64) {
        if self.sent(Event::Bytes {
            layer: index,
            bytes: n,
        }) || !self.live
        {
            return;
        }
        let mut state = self.lock();
        state.first_byte.get_or_insert_with(Instant::now);
        if let Some(layer) = state.layers.get_mut(index) {
            layer.done = (layer.done + n).min(layer.total);
            if layer.step == Step::Waiting {
                layer.step = Step::Downloading;
            }
            if layer.done == layer.total && layer.step == Step::Downloading {
                layer.step = Step::Verifying;
            }
        }
        self.draw(&mut state, false);
    }

    pub fn step(&self, index: usize, step: Step) {
        if self.sent(Event::Step { layer: index, step }) || !self.live {
            return;
        }
        let mut state = self.lock();
        if let Some(layer) = state.layers.get_mut(index) {
            layer.step = step;
            if matches!(step, Step::Done | Step::Cached | Step::Present) {
                layer.done = layer.total;
                layer.note.clear();
            }
        }
        self.draw(&mut state, false);
    }

    /// Something that happened to layer `index` (a resume, a retry): `note` on its line when
    /// live, else `text` on a line of its own.
    pub fn layer_event(&self, index: Option<usize>, note: &str, text: &str) {
        if self.sent(Event::Note { layer: index, text }) || self.verbosity == Verbosity::Quiet {
            return;
        }
        if self.live {
            let mut state = self.lock();
            if let Some(layer) = index.and_then(|i| state.layers.get_mut(i)) {
                layer.note = format!(" ({note})");
                self.draw(&mut state, true);
                return;
            }
        }
        self.print(&format!("  {text}"));
    }

    /// Layer `index` is finished; `summary` is its line in a log.
    pub fn finished(&self, index: usize, summary: &str) {
        if self.sent(Event::Finished {
            layer: index,
            summary,
        }) {
            return;
        }
        if self.live {
            self.step(index, Step::Done);
        } else {
            self.info(summary);
        }
    }

    /// The last redraw; what follows prints below the layers' lines.
    pub fn done(&self) {
        if !self.live {
            return;
        }
        let mut state = self.lock();
        self.draw(&mut state, true);
        state.layers.clear();
        state.drawn = 0;
    }

    fn print(&self, text: &str) {
        let mut state = self.lock();
        let mut err = std::io::stderr().lock();
        if self.live && state.drawn > 0 {
            // Clear the live lines, print above where they were, draw them again below.
            let _ = write!(err, "\x1b[{}A\r\x1b[J", state.drawn);
            state.drawn = 0;
        }
        let _ = writeln!(err, "{text}");
        drop(err);
        if self.live && !state.layers.is_empty() {
            self.draw(&mut state, true);
        }
    }

    fn draw(&self, state: &mut State, force: bool) {
        if state.layers.is_empty() {
            return;
        }
        let now = Instant::now();
        if !force && state.last_draw.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        state.last_draw = Some(now);
        let (width, height) = terminal_size().unwrap_or((80, 24));
        let lines = render(state, width, height, now);
        let mut screen = String::new();
        if state.drawn > 0 {
            screen.push_str(&format!("\x1b[{}A", state.drawn));
        }
        for line in &lines {
            screen.push_str("\r\x1b[2K");
            screen.push_str(line);
            screen.push('\n');
        }
        // Fewer lines than last time (a narrower screen): clear what is left below.
        screen.push_str("\x1b[J");
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(screen.as_bytes());
        let _ = err.flush();
        state.drawn = lines.len();
    }
}

/// The live lines: a line per layer (as many as fit, unfinished ones first) and a total line,
/// each cut to the width so nothing wraps.
fn render(state: &State, width: usize, height: usize, now: Instant) -> Vec<String> {
    // The lines and the cursor's line below them must fit, or the screen scrolls under us.
    let count = state.layers.len();
    let room = if count + 2 <= height {
        count
    } else {
        height.saturating_sub(3).max(1)
    };
    let mut order: Vec<usize> = (0..count).collect();
    // Unfinished layers first, then in image order.
    order.sort_by_key(|&i| (matches!(state.layers[i].step, Step::Done | Step::Cached), i));
    order.truncate(room);
    order.sort();
    let hidden = count - order.len();
    let shown: Vec<&Layer> = order.iter().map(|&i| &state.layers[i]).collect();
    let mut lines: Vec<String> = shown
        .iter()
        .map(|l| {
            format!(
                "  {} {:<11} {:>9} / {:<9}{}",
                l.short,
                l.step.word(),
                size(l.done),
                size(l.total),
                l.note
            )
        })
        .collect();
    if hidden > 0 {
        lines.push(format!("  … and {hidden} more"));
    }
    let total: u64 = state.layers.iter().map(|l| l.total).sum();
    let done: u64 = state.layers.iter().map(|l| l.done).sum();
    let elapsed = state
        .first_byte
        .map_or(0.0, |t| (now - t).as_secs_f64())
        .max(0.001);
    let rate = done as f64 / elapsed;
    let eta = if done >= total {
        "0s".to_string()
    } else if rate > 0.0 && state.first_byte.is_some() {
        duration((total - done) as f64 / rate)
    } else {
        "?".to_string()
    };
    lines.push(format!(
        "  total {} / {}, {}/s, ETA {eta}",
        size(done),
        size(total),
        size(rate as u64)
    ));
    lines
        .into_iter()
        .map(|l| l.chars().take(width.saturating_sub(1).max(10)).collect())
        .collect()
}

fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A byte count for people: "1.1 MB".
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Columns and rows of the terminal on stderr.
fn terminal_size() -> Option<(usize, usize)> {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0 && size.ws_row > 0)
        .then(|| (usize::from(size.ws_col), usize::from(size.ws_row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(layers: &[(u64, u64, Step)]) -> State {
        State {
            layers: layers
                .iter()
                .enumerate()
                .map(|(i, &(done, total, step))| Layer {
                    short: format!("{i:012}"),
                    total,
                    done,
                    step,
                    note: String::new(),
                })
                .collect(),
            drawn: 0,
            last_draw: None,
            first_byte: Some(Instant::now() - Duration::from_secs(2)),
        }
    }

    #[test]
    fn lines_fit_the_terminal() {
        let s = state(&[
            (1_000_000, 1_000_000, Step::Done),
            (500_000, 2_000_000, Step::Downloading),
            (0, 3_000_000, Step::Waiting),
        ]);
        let lines = render(&s, 100, 40, Instant::now());
        assert_eq!(lines.len(), 4);
        assert!(
            lines[1].contains("downloading") && lines[1].contains("500.0 kB / 2.0 MB"),
            "{lines:?}"
        );
        assert!(
            lines[3].starts_with("  total 1.5 MB / 6.0 MB, ") && lines[3].contains("ETA "),
            "{lines:?}"
        );
        // Narrow: every line cut below the width.
        for line in render(&s, 30, 40, Instant::now()) {
            assert!(line.chars().count() < 30, "{line}");
        }
        // Short: unfinished layers stay, finished ones are counted.
        let many: Vec<(u64, u64, Step)> = (0..10)
            .map(|i| {
                if i < 7 {
                    (1, 1, Step::Done)
                } else {
                    (0, 1, Step::Downloading)
                }
            })
            .collect();
        let lines = render(&state(&many), 80, 6, Instant::now());
        assert_eq!(lines.len(), 5, "with the cursor's line, 6 rows: {lines:?}");
        assert_eq!(
            lines.iter().filter(|l| l.contains("downloading")).count(),
            3
        );
        assert!(lines[3].contains("and 7 more"), "{lines:?}");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_500), "1.5 kB");
        assert_eq!(size(2_340_000_000), "2.3 GB");
        assert_eq!(duration(5.4), "5s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(7300.0), "2h01m");
    }
}
