//! Progress of long commands (`compact`, `audit verify`, `report`, `bench
//! report`'s generation) on stderr, drawn only when stderr is a terminal:
//! piped or redirected, a [`Progress`] draws nothing at all, so logs and
//! scripts see no bar bytes and no `\r`.
//!
//! While a bar is drawn, log lines written through [`log_writer`] suspend it
//! (the bar is cleared, the line written, the bar redrawn), so the two never
//! share a line.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar drawn now, if any (id, bar): what [`log_writer`] suspends.
static SHOWN: Mutex<Option<(u64, ProgressBar)>> = Mutex::new(None);
/// Tells one [`Progress`] from the next in [`SHOWN`].
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// How often the spinner and the elapsed time move while nothing advances
/// (a long date being merged, a slow file).
const TICK: Duration = Duration::from_millis(200);

/// A progress bar on stderr (hidden unless stderr is a terminal), cleared
/// when dropped. Shared by reference between threads.
pub struct Progress {
    bar: ProgressBar,
    id: u64,
}

impl Progress {
    /// A bar of `total` items called `unit` (`"dates"`, `"files"`), titled
    /// `what`. `total` 0: not known yet ([`set_total`](Self::set_total)).
    pub fn new(what: &str, total: u64, unit: &str) -> Progress {
        let template = format!(
            "{{prefix}} {{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} (eta {{eta}}) {{msg}}"
        );
        Progress::drawn_if(io::stderr().is_terminal(), what, total, &template)
    }

    fn drawn_if(on_terminal: bool, what: &str, total: u64, template: &str) -> Progress {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let total = (total > 0).then_some(total);
        if !on_terminal {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
            return Progress { bar, id };
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        // The template is this module's, with a unit word of the caller's:
        // a bad one is a bug (each is drawn by tests/ops under a pty), which
        // the default style would only hide.
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|e| panic!("progress template {template:?}: {e}"))
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(TICK);
        *lock() = Some((id, bar.clone()));
        Progress { bar, id }
    }

    pub(crate) fn set_total(&self, total: u64) {
        self.bar.set_length(total);
    }

    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// `done` of `total`, with the text after the bar.
    pub fn at(&self, done: u64, total: u64, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.set_message(msg);
    }

    pub(crate) fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// The text after the bar (the date being merged, the bytes read).
    pub(crate) fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_message(msg);
    }

    /// A `Fn(n)` adding `n` to this bar, for code that takes a plain
    /// callback (and may call it from several threads).
    pub fn counter(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let bar = self.bar.clone();
        move |n| bar.inc(n)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let mut shown = lock();
        if shown.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *shown = None;
        }
        drop(shown);
        self.bar.finish_and_clear();
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<(u64, ProgressBar)>> {
    SHOWN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stderr for the log (`tracing_subscriber::fmt().with_writer(log_writer)`):
/// a line written while a bar is drawn is written with the bar cleared.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shown = lock().as_ref().map(|(_, bar)| bar.clone());
        match shown {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Off a terminal the bar is hidden, counts all the same, and is not
    /// one the log suspends. (On a terminal: `tests/ops`, under a pty.)
    #[test]
    fn off_a_terminal_the_bar_is_hidden_and_still_counts() {
        let p = Progress::drawn_if(false, "test", 10, "{pos}/{len}");
        assert!(p.bar.is_hidden());
        let add = p.counter();
        std::thread::scope(|s| {
            s.spawn(|| add(3));
            s.spawn(|| add(4));
        });
        p.inc(1);
        assert_eq!(p.bar.position(), 8);
        assert!(lock().as_ref().is_none_or(|(id, _)| *id != p.id));
    }
}
