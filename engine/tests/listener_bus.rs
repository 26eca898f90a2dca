//! The listener bus: what it posts, in what order, with what stamp, and how the events read back
//! from JSON.

use discnn_engine::events::Posted;
use discnn_engine::testing::*;
use discnn_engine::{CancelToken, Config, Context, EngineError, Event, Listener};
use std::sync::{Arc, Mutex};

/// Keeps every event with its stamp.
#[derive(Default)]
struct Stamped(Mutex<Vec<Posted>>);

impl Listener for Stamped {
    fn on_posted(&self, posted: &Posted) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(posted.clone());
    }
}

impl Stamped {
    fn events(&self) -> Vec<Posted> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[test]
fn a_late_listener_hears_the_start_and_the_executors_then_jobs_blocks_and_the_end() {
    let ctx = Context::new(Config {
        master: "local[2]".into(),
        app_name: "bus-test".into(),
        ..Config::default()
    })
    .unwrap();
    let cached = ctx.parallelize((0..40i64).collect(), 4).unwrap();
    cached.cache();
    assert_eq!(cached.count().unwrap(), 40);
    // Added after a job ran: it still starts from the application's start.
    let log = Arc::new(Stamped::default());
    ctx.add_listener(log.clone());
    assert_eq!(cached.map(AddOne).count().unwrap(), 40);
    let fresh = ctx.parallelize((0..10i64).collect(), 2).unwrap();
    fresh.cache();
    assert_eq!(fresh.count().unwrap(), 10);
    ctx.post_event("epoch", r#"{"epoch":1}"#.into());
    drop((cached, fresh));
    drop(ctx);

    let events = log.events();
    let kinds: Vec<&Event> = events.iter().map(|p| &p.event).collect();
    assert!(
        matches!(kinds[0], Event::ApplicationStart { app_id, app, master }
            if app_id.starts_with("app-") && app == "bus-test" && master == "local[2]"),
        "{:?}",
        kinds[0]
    );
    assert!(
        matches!(kinds[1], Event::ExecutorAdded { executor, cores: 2, .. } if executor == "driver"),
        "{kinds:?}"
    );
    let blocks = kinds
        .iter()
        .filter(|e| matches!(e, Event::BlockUpdated { partition, .. } if *partition < 2))
        .count();
    assert_eq!(
        blocks, 2,
        "only the second cached RDD is stored while it listens"
    );
    assert!(kinds.contains(&&Event::Custom {
        kind: "epoch".into(),
        json: r#"{"epoch":1}"#.into()
    }));
    assert_eq!(kinds.last(), Some(&&Event::ApplicationEnd));
    assert_eq!(
        kinds
            .iter()
            .filter(|e| matches!(e, Event::JobStart { .. }))
            .count(),
        2
    );
    let times: Vec<u64> = events.iter().map(|p| p.time_ms).collect();
    assert!(
        times[0] > 1_600_000_000_000,
        "a wall-clock stamp: {times:?}"
    );
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "one thread posted them all, in order: {times:?}"
    );
}

#[test]
fn events_read_back_from_json_under_stable_names() {
    let posted = Posted {
        time_ms: 1_700_000_000_123,
        event: Event::StageSubmitted {
            job: 3,
            stage: 4,
            attempt: 0,
            name: "map at job.rs:10".into(),
            num_tasks: 8,
            shuffle_map: true,
        },
    };
    let text = serde_json::to_string(&posted).unwrap();
    assert!(text.contains(r#""event":"StageSubmitted""#), "{text}");
    assert!(text.contains(r#""time_ms":1700000000123"#), "{text}");
    let back: Posted = serde_json::from_str(&text).unwrap();
    assert_eq!(back, posted);
}

#[test]
fn a_cancel_ends_a_running_job_while_its_task_still_runs() {
    let cancel = CancelToken::new();
    let ctx = Context::new(Config {
        master: "local[2]".into(),
        cancel: cancel.clone(),
        ..Config::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reached = dir.path().join("reached");
    let canceller = std::thread::spawn(move || {
        while !reached.exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let err = ctx
        .parallelize((0..4i64).collect(), 2)
        .unwrap()
        .map(BlockOnce {
            dir: dir.path().display().to_string(),
            partition: 0,
        })
        .count()
        .unwrap_err();
    // The blocked task waits up to 120 s for `release`, written only now: a job that waited
    // for its tasks would have taken that long.
    let took = started.elapsed();
    std::fs::write(dir.path().join("release"), "").unwrap();
    canceller.join().unwrap();
    // Its slot finishes the released task before the directory goes.
    drop(ctx);
    assert!(matches!(err, EngineError::Cancelled { .. }), "{err}");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}
