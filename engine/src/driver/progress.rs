//! Spark's console progress bar, `[Stage 3:=====>        (42 + 2) / 100]`, on stderr, for
//! stages that have run longer than half a second. Drawn by its own thread so a busy scheduler
//! never waits on the terminal.

use crate::core::events::{Event, Listener};
use crate::core::sync::Locked;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct StageState {
    total: usize,
    done: usize,
    running: usize,
    started: Instant,
}

#[derive(Default)]
struct State {
    stages: BTreeMap<u64, StageState>,
    drawn: bool,
}

/// Draws one line per running stage on the terminal (Spark's console progress bar); a listener.
pub struct ConsoleProgressBar {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    sink: Arc<dyn Fn(Draw) + Send + Sync>,
}

/// What the bar asks its sink to do.
pub enum Draw {
    /// Redraw the line in place.
    Line(String),
    /// Erase the line.
    Clear,
}

const WIDTH: usize = 80;

fn render(stages: &BTreeMap<u64, StageState>) -> Option<String> {
    let now = Instant::now();
    let shown: Vec<(&u64, &StageState)> = stages
        .iter()
        .filter(|(_, s)| now.duration_since(s.started) > Duration::from_millis(500))
        .collect();
    if shown.is_empty() {
        return None;
    }
    let width = WIDTH / shown.len().min(3);
    let mut line = String::new();
    for (id, s) in shown.iter().take(3) {
        let header = format!("[Stage {id}:");
        let tailer = format!("({} + {}) / {}]", s.done, s.running, s.total);
        let w = width.saturating_sub(header.len() + tailer.len());
        let filled = (w * s.done).checked_div(s.total).unwrap_or(0);
        let mut bar = "=".repeat(filled);
        if filled < w {
            bar.push('>');
            bar.push_str(&" ".repeat(w - filled - 1));
        }
        line.push_str(&header);
        line.push_str(&bar);
        line.push_str(&tailer);
    }
    Some(line)
}

impl ConsoleProgressBar {
    /// Starts the drawing thread. Callers decide whether stderr is a terminal.
    pub fn start() -> Arc<Self> {
        Self::start_with(|draw| match draw {
            Draw::Line(line) => {
                eprint!("\r{line}");
                let _ = std::io::stderr().flush();
            }
            Draw::Clear => eprint!("\r{}\r", " ".repeat(WIDTH)),
        })
    }

    /// The same bar drawn elsewhere: a cluster driver sends each line to the submitting client.
    pub fn start_with(sink: impl Fn(Draw) + Send + Sync + 'static) -> Arc<Self> {
        let sink: Arc<dyn Fn(Draw) + Send + Sync> = Arc::new(sink);
        let bar = Arc::new(ConsoleProgressBar {
            state: Default::default(),
            stop: Default::default(),
            sink: sink.clone(),
        });
        let state = bar.state.clone();
        let stop = bar.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("discnn-progress".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let mut st = state.locked();
                    if let Some(line) = render(&st.stages) {
                        sink(Draw::Line(line));
                        st.drawn = true;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no progress bar: {e}");
        }
        bar
    }

    fn clear(&self, st: &mut State) {
        if st.drawn {
            (self.sink)(Draw::Clear);
            st.drawn = false;
        }
    }
}

impl Drop for ConsoleProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Listener for ConsoleProgressBar {
    fn on_event(&self, event: &Event) {
        let mut st = self.state.locked();
        match event {
            Event::StageSubmitted {
                stage, num_tasks, ..
            } => {
                st.stages.insert(
                    *stage,
                    StageState {
                        total: *num_tasks,
                        done: 0,
                        running: 0,
                        started: Instant::now(),
                    },
                );
            }
            Event::TaskStart { stage, .. } => {
                if let Some(s) = st.stages.get_mut(stage) {
                    s.running += 1;
                }
            }
            Event::TaskEnd { stage, failure, .. } => {
                if let Some(s) = st.stages.get_mut(stage) {
                    s.running = s.running.saturating_sub(1);
                    if failure.is_none() {
                        s.done += 1;
                    }
                }
            }
            Event::StageCompleted { stage, .. } => {
                st.stages.remove(stage);
                if st.stages.is_empty() {
                    self.clear(&mut st);
                }
            }
            Event::JobEnd { .. } => {
                st.stages.clear();
                self.clear(&mut st);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_sparks_format() {
        let mut m = BTreeMap::new();
        m.insert(
            3,
            StageState {
                total: 100,
                done: 42,
                running: 2,
                started: Instant::now() - Duration::from_secs(1),
            },
        );
        let line = render(&m).unwrap();
        assert!(line.starts_with("[Stage 3:====="), "{line}");
        assert!(line.ends_with("(42 + 2) / 100]"), "{line}");
        assert_eq!(line.len(), WIDTH);
        m.insert(
            4,
            StageState {
                total: 1,
                done: 0,
                running: 1,
                started: Instant::now(),
            },
        );
        assert_eq!(
            render(&m).unwrap().matches("[Stage").count(),
            1,
            "young stages are not drawn"
        );
    }
}
