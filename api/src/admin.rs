//! Operator commands that read the event log: `audit`, `projections rebuild`,
//! `projections verify`.

use std::io::IsTerminal as _;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use projections::history;
use projections::rebuild::{self, Progress};

use crate::cli::connect;
use crate::config::Config;
use crate::routes::history::entry;

/// Prints user `id`'s history: a table, or JSON lines with `json`.
pub async fn audit(config: &Config, id: i64, json: bool) -> anyhow::Result<()> {
    let pool = connect(config).await?;
    let mut after = 0;
    let mut printed = 0;
    loop {
        let events = history::page(&pool, id, after, 1000).await?;
        let Some(last) = events.last() else { break };
        after = last.sequence;
        if !json && printed == 0 {
            println!("{:<27}  {:<7}  {:<20}  CHANGES", "TIME", "ACTOR", "EVENT");
        }
        for event in &events {
            let line = entry(event).map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{line}");
            } else {
                let changes = line["changes"]
                    .as_object()
                    .map(|changes| {
                        changes
                            .iter()
                            .map(|(field, value)| format!("{field}={value}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let actor = event.meta("actor_id").unwrap_or("-");
                let time = line["recorded_at"].as_str().unwrap_or("");
                println!(
                    "{time:<27}  {actor:<7}  {:<20}  {changes}",
                    event.event_type
                );
            }
            printed += 1;
        }
    }
    if printed == 0 {
        anyhow::bail!("no events for user {id}");
    }
    Ok(())
}

pub async fn rebuild(config: &Config) -> anyhow::Result<()> {
    let pool = connect(config).await?;
    let started = Instant::now();
    let mut reporter = Reporter::new("rebuild");
    let report = rebuild::rebuild(&pool, &mut |p| reporter.show(p))
        .await
        .context("rebuild failed; the live tables are untouched")?;
    reporter.finish();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rebuilt the read model: {} events, {} users in {seconds:.1} s ({:.0} events/s); swapped in",
        report.events,
        report.users,
        report.events as f64 / seconds.max(f64::EPSILON)
    );
    Ok(())
}

/// `Ok(true)` when the live tables match the log.
pub async fn verify(config: &Config) -> anyhow::Result<bool> {
    let pool = connect(config).await?;
    let mut reporter = Reporter::new("verify");
    let differences = rebuild::verify(&pool, &mut |p| reporter.show(p))
        .await
        .context("verify failed")?;
    reporter.finish();
    for difference in &differences {
        println!(
            "user {}: {} is {} in the read model, {} from the log",
            difference.user_id, difference.field, difference.live, difference.expected
        );
    }
    if differences.is_empty() {
        println!("the read model matches the event log");
    } else {
        println!("{} difference(s)", differences.len());
    }
    Ok(differences.is_empty())
}

/// A progress bar with events per second and ETA on a terminal; plain lines, at most one
/// a second, otherwise.
struct Reporter {
    label: &'static str,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl Reporter {
    fn new(label: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label);
            bar
        });
        Self {
            label,
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn show(&mut self, progress: Progress) -> ControlFlow<()> {
        match &self.bar {
            Some(bar) => {
                bar.set_length(progress.total);
                bar.set_position(progress.applied);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(1)
                || progress.applied == progress.total =>
            {
                self.last_line = Instant::now();
                let seconds = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
                let rate = progress.applied as f64 / seconds;
                let eta = (progress.total - progress.applied) as f64 / rate.max(1.0);
                eprintln!(
                    "{}: {}/{} events, {rate:.0} events/s, ETA {eta:.0} s",
                    self.label, progress.applied, progress.total
                );
            }
            None => {}
        }
        ControlFlow::Continue(())
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
