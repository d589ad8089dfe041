//! The live progress line (indicatif): elapsed, target against achieved rate, VUs, errors and
//! drops. Drawn on stderr only when it is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a progress line shows, updated once a second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    /// Since the test started.
    pub elapsed: Duration,
    /// The test's planned length (the latest scenario end without graceful stop).
    pub planned: Duration,
    /// Arrival rate planned now, all open-model scenarios together (per second).
    pub target_rate: f64,
    /// Iterations started in the last second.
    pub achieved_rate: f64,
    /// VUs running an iteration.
    pub vus: u64,
    /// VUs allocated.
    pub vus_max: u64,
    /// Iterations completed so far.
    pub iterations: u64,
    /// Failed iterations so far.
    pub errors: u64,
    /// Dropped iterations so far.
    pub dropped: u64,
}

/// A progress line following a running test. Its task ends when the test does (the live
/// channel closes) or at [`Progress::finish`].
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    task: JoinHandle<()>,
}

impl Progress {
    /// Follows `live` on stderr; hidden when stderr is not a terminal or `visible` is false.
    pub fn start(mut live: watch::Receiver<Live>, visible: bool) -> Progress {
        let target = if visible && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let b = bar.clone();
        let task = tokio::spawn(async move {
            while live.changed().await.is_ok() {
                let l = live.borrow_and_update().clone();
                b.set_message(line(&l));
            }
        });
        Progress { bar, task }
    }

    /// Removes the line.
    pub async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        self.bar.finish_and_clear();
    }
}

/// The text of the line.
pub fn line(l: &Live) -> String {
    format!(
        "{:.0}/{:.0}s  target {:.0}/s  achieved {:.0}/s  VUs {}/{}  iterations {}  errors {}  dropped {}",
        l.elapsed.as_secs_f64(),
        l.planned.as_secs_f64(),
        l.target_rate,
        l.achieved_rate,
        l.vus,
        l.vus_max,
        l.iterations,
        l.errors,
        l.dropped
    )
}
