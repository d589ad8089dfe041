//! What `cio pipe` shows while it runs: on a terminal a bar of the input read (bytes of the
//! total when the input is files), with events delivered per second, in flight and dead
//! letters; elsewhere (a CI log) the same as a plain line every few seconds; nothing with
//! `--no-progress`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cio_load::report::ProgressMode;
use cio_pipeline::source::ReadProgress;
use cio_pipeline::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

/// The status task of one run; [`PipeStatus::finish`] ends it.
pub struct PipeStatus {
    bar: ProgressBar,
    task: Option<JoinHandle<()>>,
}

/// One status: what the bar's message and the plain line say.
fn status(progress: &Progress, rate: f64) -> String {
    format!(
        "delivered {} ({rate:.0}/s) | in flight {} | dead letters {}",
        progress.delivered(),
        progress.in_flight(),
        progress.dead_lettered()
    )
}

fn read_part(read: &ReadProgress) -> String {
    let done = read.bytes_read();
    match read.bytes_to_read() {
        Some(total) if total > 0 => format!(
            "{} of {} read ({:.0} %)",
            HumanBytes(done),
            HumanBytes(total),
            100.0 * done.min(total) as f64 / total as f64
        ),
        _ => format!("{} read", HumanBytes(done)),
    }
}

impl PipeStatus {
    /// Follows `progress` (and `read`, how far the input has been read) as `mode` says.
    pub fn start(mode: ProgressMode, progress: Arc<Progress>, read: ReadProgress) -> PipeStatus {
        let bar = match (mode, read.bytes_to_read()) {
            (ProgressMode::Bars, Some(total)) => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "[{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} read | {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=>-"),
                );
                bar
            }
            (ProgressMode::Bars, None) => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bytes} read | {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            }
            _ => ProgressBar::hidden(),
        };
        let task = match mode {
            ProgressMode::Off => None,
            ProgressMode::Bars => {
                let bar = bar.clone();
                Some(tokio::spawn(async move {
                    let mut rate = Rate::new(progress.delivered());
                    loop {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        bar.set_position(read.bytes_read());
                        bar.set_message(status(&progress, rate.update(progress.delivered())));
                    }
                }))
            }
            ProgressMode::Lines(every) => Some(tokio::spawn(async move {
                let mut rate = Rate::new(progress.delivered());
                let started = Instant::now();
                loop {
                    tokio::time::sleep(every).await;
                    eprintln!(
                        "cio pipe {:.0}s | {} | {}",
                        started.elapsed().as_secs_f64(),
                        read_part(&read),
                        status(&progress, rate.update(progress.delivered()))
                    );
                }
            })),
        };
        PipeStatus { bar, task }
    }

    /// Ends the task and removes the bar.
    pub async fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
            let _ = task.await;
        }
        self.bar.finish_and_clear();
    }
}

/// Events per second since the last update.
struct Rate {
    last: u64,
    at: Instant,
    rate: f64,
}

impl Rate {
    fn new(now: u64) -> Rate {
        Rate {
            last: now,
            at: Instant::now(),
            rate: 0.0,
        }
    }

    fn update(&mut self, now: u64) -> f64 {
        let secs = self.at.elapsed().as_secs_f64();
        if secs >= 0.5 {
            self.rate = now.saturating_sub(self.last) as f64 / secs;
            self.last = now;
            self.at = Instant::now();
        }
        self.rate
    }
}
