//! Showing a rebuild's [`Progress`]: a progress bar (events done, events/s, ETA) when stderr
//! is a terminal, plain lines otherwise (at most one every few seconds, plus phase changes).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use orderflow_projections::rebuild::{Phase, Progress};

/// Renders progress reports of one rebuild. Pass `&|p| renderer.show(p)` to
/// [`orderflow_projections::rebuild::rebuild`], then call [`ProgressRenderer::finish`].
pub(crate) struct ProgressRenderer {
    label: String,
    bar: Option<ProgressBar>,
    plain: Mutex<PlainState>,
    every: Duration,
}

struct PlainState {
    last: Option<Instant>,
    phase: Option<Phase>,
}

impl ProgressRenderer {
    /// A bar on a terminal (stderr), plain lines otherwise.
    pub(crate) fn new(label: impl Into<String>) -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar(label)
        } else {
            Self::plain(label, Duration::from_secs(2))
        }
    }

    /// Always a progress bar on stderr.
    pub(crate) fn bar(label: impl Into<String>) -> Self {
        let label = label.into();
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} {msg} [{wide_bar}] {pos}/{len} events, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.clone());
        Self {
            label,
            bar: Some(bar),
            plain: Mutex::new(PlainState {
                last: None,
                phase: None,
            }),
            every: Duration::ZERO,
        }
    }

    /// Plain lines on stderr, at most one per `every` within a phase.
    pub(crate) fn plain(label: impl Into<String>, every: Duration) -> Self {
        Self {
            label: label.into(),
            bar: None,
            plain: Mutex::new(PlainState {
                last: None,
                phase: None,
            }),
            every,
        }
    }

    /// Shows one report.
    pub(crate) fn show(&self, progress: Progress) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(progress.total);
                bar.set_position(progress.done);
                bar.set_message(format!(
                    "{} {:.0} events/s",
                    progress.phase, progress.per_second
                ));
            }
            None => {
                let mut state = self.plain.lock().unwrap_or_else(|e| e.into_inner());
                let due = state.last.is_none_or(|t| t.elapsed() >= self.every);
                if due || state.phase != Some(progress.phase) {
                    state.last = Some(Instant::now());
                    state.phase = Some(progress.phase);
                    eprintln!("{}", plain_line(&self.label, &progress));
                }
            }
        }
    }

    /// Ends the bar, leaving its last state on screen.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
            // The bar leaves the cursor at the end of its line; what is printed next starts
            // on a line of its own.
            eprintln!();
        }
    }
}

/// One plain line of a rebuild's progress: `label` and what [`Progress`] says of itself.
pub(crate) fn plain_line(label: &str, p: &Progress) -> String {
    format!("{label} {p}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_done_rate_and_eta() {
        let line = plain_line(
            "order-summary",
            &Progress {
                phase: Phase::Folding,
                done: 250,
                total: 1000,
                per_second: 50.0,
                eta: Some(Duration::from_secs(15)),
            },
        );
        assert_eq!(
            line,
            "order-summary folding 250/1000 events (25.0%), 50 events/s, ETA 15s"
        );
    }
}
