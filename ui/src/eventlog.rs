//! Event logs: one file per application, one JSON event per line (`Posted`: `time_ms` and the
//! event under its stable name), zstd-compressed. A listener hands each event to a writer thread
//! (off the posting thread: the scheduler never waits on the disk), which flushes at every job
//! end, so a killed driver leaves a readable prefix. The file is `DIR/<app id>.jsonl.zst.inprogress`
//! while the application runs and loses `.inprogress` when it ends, as Spark's do.

use discnn_engine::events::{Event, Listener, ListenerFactories, Posted};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// A finished application's log ends so.
pub const EXTENSION: &str = ".jsonl.zst";
/// A running (or killed) application's log ends so.
pub const IN_PROGRESS: &str = ".inprogress";

/// Why an event log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The file could not be opened or listed.
    #[error("event log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Listener factories that give each application of a context an event log in `dir` (created
/// if missing).
pub fn factory(dir: &Path) -> Result<ListenerFactories, EventLogError> {
    std::fs::create_dir_all(dir).map_err(|source| EventLogError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let dir = dir.to_path_buf();
    let mut f = ListenerFactories::default();
    f.push(move || Arc::new(EventLogWriter::start(dir.clone())) as Arc<dyn Listener>);
    Ok(f)
}

/// Writes one application's events to its file, on a thread of its own.
pub struct EventLogWriter {
    tx: Mutex<Option<Sender<Posted>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EventLogWriter {
    /// A writer whose file is named when the application's start arrives.
    pub fn start(dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("discnn-event-log".into())
            .spawn(move || write_loop(&dir, rx))
            .map_err(|e| tracing::warn!("no event log: cannot start its thread: {e}"))
            .ok();
        EventLogWriter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
        }
    }
}

impl Listener for EventLogWriter {
    fn on_posted(&self, posted: &Posted) {
        // Heartbeats are live news only (Spark leaves its executor metrics updates out too).
        if matches!(posted.event, Event::ExecutorHeartbeat { .. }) {
            return;
        }
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tx.as_ref() {
            let _ = t.send(posted.clone());
        }
        if matches!(posted.event, Event::ApplicationEnd) {
            // The end is the last event: close the channel and wait for the file to be
            // complete, so that whoever reads it after the context is gone finds it whole.
            tx.take();
            drop(tx);
            if let Some(h) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = h.join();
            }
        }
    }
}

/// The open file of one application.
struct Open {
    path: PathBuf,
    out: zstd::stream::write::Encoder<'static, BufWriter<File>>,
}

fn write_loop(dir: &Path, rx: Receiver<Posted>) {
    let mut open: Option<Open> = None;
    let mut line = Vec::with_capacity(512);
    for posted in rx {
        if let Event::ApplicationStart { app_id, .. } = &posted.event {
            let path = dir.join(format!("{app_id}{EXTENSION}{IN_PROGRESS}"));
            match File::create(&path)
                .and_then(|f| zstd::stream::write::Encoder::new(BufWriter::new(f), 3))
            {
                Ok(out) => open = Some(Open { path, out }),
                Err(e) => tracing::warn!("no event log at {}: {e}", path.display()),
            }
        }
        let Some(o) = open.as_mut() else { continue };
        line.clear();
        if serde_json::to_writer(&mut line, &posted).is_err() {
            continue;
        }
        line.push(b'\n');
        let flush = matches!(
            posted.event,
            Event::JobEnd { .. } | Event::ApplicationStart { .. } | Event::Custom { .. }
        );
        let written = o.out.write_all(&line).and_then(|_| {
            if flush {
                // A zstd flush ends a block: everything so far decodes without the rest.
                o.out.flush()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            tracing::warn!(
                "event log {}: {e}; no more events written",
                o.path.display()
            );
            open = None;
            continue;
        }
        if matches!(posted.event, Event::ApplicationEnd) {
            break;
        }
    }
    let Some(o) = open else { return };
    let finished = o.out.finish().and_then(|mut w| w.flush());
    match finished {
        Ok(()) => {
            let done = o.path.with_extension("");
            if let Err(e) = std::fs::rename(&o.path, &done) {
                tracing::warn!("event log {}: {e}", o.path.display());
            }
        }
        Err(e) => tracing::warn!("event log {}: {e}", o.path.display()),
    }
}

/// Whether `path` names an event log (finished or not).
pub fn is_event_log(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(EXTENSION) || name.ends_with(&format!("{EXTENSION}{IN_PROGRESS}"))
}

/// The events of a log, in order: everything up to a cut (a killed writer's unfinished frame, a
/// truncated last line) is read; what follows the cut is not, and is not an error.
pub fn read(path: &Path) -> Result<Vec<Posted>, EventLogError> {
    let file = File::open(path).map_err(|source| EventLogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let decoder = zstd::stream::read::Decoder::new(file).map_err(|source| EventLogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(read_lines(decoder, path))
}

fn read_lines(input: impl Read, path: &Path) -> Vec<Posted> {
    let mut reader = BufReader::new(input);
    let mut events = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) if buf.last() != Some(&b'\n') => break, // a cut last line
            Ok(_) => match serde_json::from_slice::<Posted>(&buf) {
                Ok(p) => events.push(p),
                Err(e) => tracing::debug!("{}: skipping a line: {e}", path.display()),
            },
            // The compressed stream ends mid-frame: the writer was killed.
            Err(_) => break,
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_line_is_skipped_and_the_rest_is_read() {
        let a = serde_json::to_string(&Posted::now(Event::ApplicationEnd)).unwrap();
        let text = format!("{a}\n{a}\n{}", &a[..a.len() / 2]);
        let events = read_lines(text.as_bytes(), Path::new("x"));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_killed_writer_leaves_what_it_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl.zst");
        let mut out = zstd::stream::write::Encoder::new(File::create(&path).unwrap(), 3).unwrap();
        let line = serde_json::to_string(&Posted::now(Event::JobEnd {
            job: 1,
            error: None,
        }))
        .unwrap();
        for _ in 0..3 {
            writeln!(out, "{line}").unwrap();
        }
        out.flush().unwrap();
        write!(out, "{line}\n{line}").unwrap();
        // Dropped unfinished, as a killed process leaves it.
        drop(out);
        let events = read(&path).unwrap();
        assert!(events.len() >= 3, "{}", events.len());
    }
}
