//! Progress on stderr, only where someone watches: stderr is a terminal and
//! the run is long (many events, or a server whose log size is unknown).
//! Redirected or piped, nothing but the command's own output is printed.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Below this many events a run is over before a bar would help.
const LONG_RUN: u64 = 100_000;

pub struct Progress(Option<ProgressBar>);

impl Progress {
    pub fn hidden() -> Self {
        Progress(None)
    }

    /// A bar for `total` events (a counter when unknown), or nothing.
    pub fn new(total: Option<u64>, what: &str) -> Self {
        if !std::io::stderr().is_terminal() || total.is_some_and(|t| t < LONG_RUN) {
            return Progress(None);
        }
        let bar = match total {
            Some(t) => {
                let bar =
                    ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr_with_hz(5));
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg:>10} [{bar:40}] {human_pos}/{human_len} events ({elapsed}, {eta} left)",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar
            }
            None => {
                let bar =
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg:>10} {spinner} {human_pos} events ({per_sec})",
                ) {
                    bar.set_style(style);
                }
                bar
            }
        };
        bar.set_message(what.to_string());
        Progress(Some(bar))
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
