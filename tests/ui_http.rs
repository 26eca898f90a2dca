//! The UI's pages, REST API and /metrics over HTTP, against contexts in this process: a local
//! one (every endpoint's shape and status codes, every link of every page) and a
//! `local-cluster` whose executor is killed mid-job (shown as lost).

mod common;

use common::http::{get, Response};
use discnn_engine::testing::*;
use discnn_engine::{Config, Context};
use discnn_ui::{LiveApps, UiServer};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn ui() -> (Arc<LiveApps>, UiServer, String) {
    let apps = Arc::new(LiveApps::default());
    let server = UiServer::start("127.0.0.1:0", apps.clone(), "discnn", None, false).unwrap();
    let addr = server.address().to_string();
    (apps, server, addr)
}

fn ok_json(addr: &str, path: &str) -> Value {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{path}"
    );
    r.json()
}

/// Application `id` as `/api/v1/applications` lists it.
fn application(addr: &str, id: &str) -> Value {
    ok_json(addr, "/api/v1/applications")
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .expect("the application is listed")
}

/// The `href`s of a page.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect()
}

/// `link` resolved against page `base` (a path), as a browser does.
fn resolve(base: &str, link: &str) -> String {
    let (link, query) = match link.split_once('?') {
        Some((l, q)) => (l, format!("?{q}")),
        None => (link, String::new()),
    };
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop(); // the page's own name
    for seg in link.split('/') {
        match seg {
            "." => {}
            ".." => {
                if parts.len() > 1 {
                    parts.pop();
                }
            }
            s => parts.push(s),
        }
    }
    let mut path = parts.join("/");
    if link.ends_with('/') || link == "." || link.ends_with("/.") {
        path = path.trim_end_matches('.').to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
    }
    path + &query
}

/// Every page reachable from `/`: each answers 200 and every link on it resolves (no 404).
fn crawl(addr: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec!["/".to_string()];
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let r: Response = get(addr, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        for l in links(&r.body) {
            assert!(
                !l.starts_with('/') && !l.contains("://"),
                "{path}: {l} is not relative"
            );
            let target = resolve(&path, &l);
            if !seen.contains(&target) {
                todo.push(target);
            }
        }
    }
    seen
}

#[test]
fn links_resolve_as_a_browser_resolves_them() {
    assert_eq!(resolve("/", "applications/a/"), "/applications/a/");
    assert_eq!(resolve("/applications/a/", "jobs"), "/applications/a/jobs");
    assert_eq!(
        resolve("/applications/a/jobs/3", "../stages/4"),
        "/applications/a/stages/4"
    );
    assert_eq!(resolve("/applications/a/jobs", "../../"), "/");
    assert_eq!(resolve("/applications/a/jobs/3", "../"), "/applications/a/");
    assert_eq!(resolve("/applications/a/jobs", "./"), "/applications/a/");
    assert_eq!(
        resolve("/applications/a/", "training?run=1"),
        "/applications/a/training?run=1"
    );
}

#[test]
fn a_local_application_in_every_endpoint() {
    let (apps, _server, addr) = ui();
    let ctx = Context::new(Config {
        master: "local[2]".into(),
        app_name: "ui-test".into(),
        listeners: apps.factory(),
        ..Config::default()
    })
    .unwrap();
    let id = ctx.app_id();
    let mut env = std::collections::BTreeMap::new();
    env.insert("job.input".to_string(), "in.txt".to_string());
    ctx.set_environment(env);
    let cached = ctx.parallelize((0..1000i64).collect(), 4).unwrap();
    cached.cache();
    assert_eq!(cached.count().unwrap(), 1000);
    let sums = cached
        .key_by(Modulo(7))
        .reduce_by_key(Add, 3)
        .collect()
        .unwrap();
    assert_eq!(sums.len(), 7);
    let run = serde_json::json!({"output": "out", "model": "out/model.safetensors", "epochs": 2});
    ctx.post_event("TrainingStart", run.to_string());
    let rows = [
        r#"{"epoch":1,"train_loss":2.1,"test_accuracy":0.25}"#,
        r#"{"epoch":2,"train_loss":1.7,"test_accuracy":0.4933}"#,
    ];
    for r in rows {
        ctx.post_event("EpochEnd", r.into());
    }

    let app = application(&addr, &id);
    assert_eq!(app["name"], "ui-test");
    assert_eq!(app["attempts"][0]["completed"], false);

    let base = format!("/api/v1/applications/{id}");
    let jobs = ok_json(&addr, &format!("{base}/jobs"));
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for j in jobs {
        assert_eq!(j["status"], "SUCCEEDED");
        assert_eq!(j["numTasks"], j["numCompletedTasks"]);
        assert_eq!(j["numFailedTasks"], 0);
        assert!(j["submissionTime"].as_str().unwrap().ends_with("GMT"));
        assert!(j["completionTime"].is_string());
        assert!(!j["stageIds"].as_array().unwrap().is_empty());
    }
    // Newest first; the shuffle job has two stages.
    assert_eq!(jobs[0]["stageIds"].as_array().unwrap().len(), 2);
    let job_id = jobs[0]["jobId"].as_u64().unwrap();
    assert_eq!(
        ok_json(&addr, &format!("{base}/jobs/{job_id}"))["jobId"],
        job_id
    );
    let missing = get(&addr, &format!("{base}/jobs/999999"));
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());

    let stages = ok_json(&addr, &format!("{base}/stages"));
    let stages = stages.as_array().unwrap();
    assert_eq!(stages.len(), 3);
    let written: u64 = stages
        .iter()
        .map(|s| s["shuffleWriteBytes"].as_u64().unwrap())
        .sum();
    let read: u64 = stages
        .iter()
        .map(|s| s["shuffleReadBytes"].as_u64().unwrap())
        .sum();
    assert!(written > 0);
    assert_eq!(read, written, "every shuffle byte written was read");
    for s in stages {
        assert_eq!(s["status"], "COMPLETE");
        assert!(s["numTasks"].as_u64().unwrap() > 0);
        assert!(s["executorRunTime"].is_u64());
        let sid = s["stageId"].as_u64().unwrap();
        assert_eq!(
            ok_json(&addr, &format!("{base}/stages/{sid}"))["stageId"],
            sid
        );
    }
    assert_eq!(get(&addr, &format!("{base}/stages/999999")).status, 404);

    let executors = ok_json(&addr, &format!("{base}/executors"));
    let e = &executors[0];
    assert_eq!(e["id"], "driver");
    assert_eq!(e["isActive"], true);
    assert_eq!(e["totalCores"], 2);
    assert_eq!(e["completedTasks"], 4 + 4 + 3);
    assert!(e["memoryUsed"].as_u64().unwrap() > 0, "{e}");

    let storage = ok_json(&addr, &format!("{base}/storage/rdd"));
    let rdd = &storage[0];
    assert_eq!(rdd["numPartitions"], 4);
    assert_eq!(rdd["numCachedPartitions"], 4);
    assert!(rdd["memoryUsed"].as_u64().unwrap() > 0);

    let env = ok_json(&addr, &format!("{base}/environment"));
    assert!(env["properties"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(["job.input", "in.txt"])));

    let training = ok_json(&addr, &format!("{base}/training"));
    let want: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert_eq!(training, Value::Array(want.clone()));
    assert_eq!(
        ok_json(&addr, &format!("{base}/training?run=0")),
        Value::Array(want)
    );
    assert_eq!(get(&addr, &format!("{base}/training?run=5")).status, 404);
    assert_eq!(get(&addr, "/api/v1/applications/app-none/jobs").status, 404);
    assert!(ok_json(&addr, "/api/v1/version")["fingerprint"].is_string());

    let pages = crawl(&addr);
    for tab in [
        "executors",
        "jobs",
        "stages",
        "storage",
        "environment",
        "training",
    ] {
        let p = format!("/applications/{id}/{tab}");
        assert!(pages.contains(&p), "{p} is linked: {pages:?}");
    }
    assert!(pages.contains(&format!("/applications/{id}/jobs/{job_id}")));
    let page = get(&addr, &format!("/applications/{id}/training")).body;
    assert!(
        page.contains("49.33"),
        "accuracy as a percentage with two decimals"
    );
    assert!(page.contains("<svg"), "the curves are drawn");
    assert_eq!(
        get(&addr, &format!("/applications/{id}/nothing")).status,
        404
    );
    let redirect = get(&addr, &format!("/applications/{id}"));
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some(format!("{id}/").as_str()));

    let metrics = get(&addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let lines = metrics.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let finished = scrape
        .samples
        .iter()
        .find(|s| s.metric == "discnn_tasks_finished_total" && s.labels.get("app") == Some(&id))
        .expect("tasks finished");
    assert!(matches!(finished.value, prometheus_parse::Value::Counter(v) if v == 11.0));
    for name in [
        "discnn_executors",
        "discnn_tasks_running",
        "discnn_shuffle_write_bytes_total",
        "discnn_block_manager_memory_bytes",
        "discnn_training_loss",
        "discnn_training_test_accuracy",
        "discnn_job_duration_seconds",
        "discnn_stage_duration_seconds",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric.starts_with(name)),
            "{name} in {}",
            metrics.body
        );
    }

    cached.unpersist();
    assert_eq!(
        ok_json(&addr, &format!("{base}/storage/rdd")),
        serde_json::json!([])
    );
    drop(cached);
    drop(ctx);
    assert_eq!(application(&addr, &id)["attempts"][0]["completed"], true);
}

#[test]
fn an_executor_killed_mid_job_shows_as_lost() {
    let (apps, _server, addr) = ui();
    let ctx = common::cluster_with(2, Duration::from_secs(2), Duration::from_secs(30), |c| {
        c.listeners = apps.factory();
    });
    let id = ctx.app_id();
    let dir = tempfile::tempdir().unwrap();
    let barrier = BlockOnce {
        dir: dir.path().to_string_lossy().into_owned(),
        partition: 1,
    };
    common::with_logs(&ctx, || {
        let got = std::thread::scope(|s| {
            let h = s.spawn(|| {
                ctx.parallelize((0..100i64).collect(), 4)
                    .unwrap()
                    .map(barrier)
                    .key_by(Modulo(3))
                    .reduce_by_key(Add, 2)
                    .count()
                    .unwrap()
            });
            let pid: u32 =
                common::wait_for_file(&dir.path().join("reached"), Duration::from_secs(60))
                    .trim()
                    .parse()
                    .unwrap();
            common::kill9(pid);
            h.join().unwrap()
        });
        assert_eq!(got, 3);
        let executors = ok_json(&addr, &format!("/api/v1/applications/{id}/executors"));
        let states: Vec<(&str, bool)> = executors
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["state"].as_str().unwrap(),
                    e["isActive"].as_bool().unwrap(),
                )
            })
            .collect();
        assert!(states.contains(&("lost", false)), "{executors}");
        assert!(states.contains(&("alive", true)), "{executors}");
        let page = get(&addr, &format!("/applications/{id}/executors")).body;
        assert!(page.contains("class=\"lost\""), "{page}");
        let stages = ok_json(&addr, &format!("/api/v1/applications/{id}/stages"));
        let failed: u64 = stages
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["numFailedTasks"].as_u64().unwrap())
            .sum();
        assert!(failed >= 1, "the lost task counts as failed: {stages}");
    });
}
