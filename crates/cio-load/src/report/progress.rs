//! Live progress (indicatif): on a terminal one bar per scenario in k6's style (VUs, elapsed
//! over planned, achieved over target rate, iterations, errors, drops); elsewhere (a CI log) a
//! plain status line per scenario every few seconds; nothing with `--no-progress`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
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
    /// Each scenario, in the order of the test.
    pub scenarios: Vec<ScenarioLive>,
}

/// One scenario in the progress view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScenarioLive {
    /// Its name.
    pub name: String,
    /// Since it started (0 before), at most `planned`.
    pub elapsed: Duration,
    /// Its executor's duration (`max_duration` for the `-iterations` executors).
    pub planned: Duration,
    /// Arrival rate planned now (open model), per second.
    pub target_rate: Option<f64>,
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
    /// Its executor has ended.
    pub done: bool,
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// One bar per scenario, redrawn in place (a terminal).
    Bars,
    /// A plain status line per scenario this often (a CI log, a file).
    Lines(Duration),
    /// Nothing (`--no-progress`).
    Off,
}

impl ProgressMode {
    /// Bars on a terminal, plain lines every `every` (at least a second) elsewhere, nothing
    /// when `off`.
    pub fn for_stderr(off: bool, every: Duration) -> ProgressMode {
        if off {
            ProgressMode::Off
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines(every.max(Duration::from_secs(1)))
        }
    }
}

/// The progress of a running test, on stderr. Its task ends when the test does (the live
/// channel closes) or at [`Progress::finish`].
#[derive(Debug)]
pub struct Progress {
    bars: MultiProgress,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Follows `live` on stderr as `mode` says.
    pub fn start(mut live: watch::Receiver<Live>, mode: ProgressMode) -> Progress {
        let bars = MultiProgress::with_draw_target(match mode {
            ProgressMode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        let task = match mode {
            ProgressMode::Off => None,
            ProgressMode::Bars => {
                let bars = bars.clone();
                Some(tokio::spawn(async move {
                    let mut shown: Vec<ProgressBar> = Vec::new();
                    while live.changed().await.is_ok() {
                        let l = live.borrow_and_update().clone();
                        for (i, s) in l.scenarios.iter().enumerate() {
                            if shown.len() <= i {
                                shown.push(bars.add(scenario_bar(s)));
                            }
                            let bar = &shown[i];
                            bar.set_position(s.elapsed.as_millis() as u64);
                            bar.set_message(scenario_line(s));
                        }
                    }
                }))
            }
            ProgressMode::Lines(every) => Some(tokio::spawn(async move {
                let mut next = every;
                while live.changed().await.is_ok() {
                    let l = live.borrow_and_update().clone();
                    if l.elapsed + Duration::from_millis(500) < next {
                        continue;
                    }
                    next += every;
                    for s in &l.scenarios {
                        eprintln!(
                            "cio load {:.0}s/{:.0}s  {:<16} {}",
                            l.elapsed.as_secs_f64(),
                            l.planned.as_secs_f64(),
                            s.name,
                            scenario_line(s)
                        );
                    }
                }
            })),
        };
        Progress { bars, task }
    }

    /// Removes the bars.
    pub async fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
            let _ = task.await;
        }
        let _ = self.bars.clear();
    }
}

fn scenario_bar(s: &ScenarioLive) -> ProgressBar {
    let bar = ProgressBar::new(s.planned.as_millis().max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:<16} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=>-"),
    );
    bar.set_prefix(s.name.clone());
    bar
}

/// One scenario's status, as k6 shows it: VUs, elapsed over planned, achieved over target rate,
/// and what completed, failed and was dropped.
pub fn scenario_line(s: &ScenarioLive) -> String {
    let rate = match s.target_rate {
        Some(t) => format!("{:.1}/{:.1} iters/s", s.achieved_rate, t),
        None => format!("{:.1} iters/s", s.achieved_rate),
    };
    format!(
        "{:03}/{:03} VUs  {:.1}s/{:.1}s  {rate}  {} iterations  {} errors  {} dropped{}",
        s.vus,
        s.vus_max,
        s.elapsed.as_secs_f64(),
        s.planned.as_secs_f64(),
        s.iterations,
        s.errors,
        s.dropped,
        if s.done { "  done" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_line_reads_like_k6s() {
        let s = ScenarioLive {
            name: "events".into(),
            elapsed: Duration::from_secs(5),
            planned: Duration::from_secs(18),
            target_rate: Some(50.0),
            achieved_rate: 49.5,
            vus: 3,
            vus_max: 20,
            iterations: 240,
            errors: 1,
            dropped: 0,
            done: false,
        };
        assert_eq!(
            scenario_line(&s),
            "003/020 VUs  5.0s/18.0s  49.5/50.0 iters/s  240 iterations  1 errors  0 dropped"
        );
        let closed = ScenarioLive {
            target_rate: None,
            done: true,
            ..s
        };
        assert!(
            scenario_line(&closed).contains("49.5 iters/s")
                && scenario_line(&closed).ends_with("done")
        );
    }
}
