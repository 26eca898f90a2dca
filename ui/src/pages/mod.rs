//! The HTML pages, rendered on the server (maud): usable without JavaScript; a live page
//! refreshes itself in place (`layout::REFRESH`).

pub mod layout;
mod training;

use crate::api::min_median_max;
use crate::format::{bytes, duration_ms, gmt};
use crate::store::{AppState, StageData};
use layout::{page, Place};
use maud::{html, Markup};
pub use training::training;

fn place<'a>(st: &'a AppState, tab: &'a str, depth: usize) -> Place<'a> {
    Place {
        app: Some(&st.id),
        tab,
        depth,
    }
}

fn app_page(st: &AppState, title: &str, p: Place<'_>, body: Markup) -> Markup {
    page(title, p, st.running(), !st.training.is_empty(), body)
}

/// The home page: every application.
pub fn home(apps: &[AppState], title: &str) -> Markup {
    let live = apps.iter().any(AppState::running);
    let p = Place {
        app: None,
        tab: "",
        depth: 0,
    };
    page(
        title,
        p,
        live,
        false,
        html! {
            @if apps.is_empty() { p { "No applications yet." } }
            table {
                tr { th { "Application" } th { "Name" } th { "Master" } th { "Started" } th { "Duration" } th { "State" } }
                @for a in apps.iter().rev() {
                    tr {
                        td { a href={ "applications/" (a.id) "/" } { (a.id) } }
                        td { (a.name) }
                        td { (a.master) }
                        td { (gmt(a.start_ms)) }
                        td.n { (duration_ms(a.end_ms.unwrap_or(a.last_event_ms).saturating_sub(a.start_ms))) }
                        td { @if a.running() { span.RUNNING { "running" } } @else { "ended" } }
                    }
                }
            }
        },
    )
}

/// An application's front page: what it is and how far it got.
pub fn overview(st: &AppState) -> Markup {
    let running = st.jobs.values().filter(|j| j.status == "RUNNING").count();
    let alive = st.executors.iter().filter(|e| e.state == "alive").count();
    app_page(
        st,
        &format!("{} ({})", st.name, st.id),
        place(st, "app", 0),
        html! {
            table {
                tr { th { "Master" } td { (st.master) } }
                tr { th { "Started" } td { (gmt(st.start_ms)) } }
                tr { th { "State" } td { @if st.running() { "running" } @else { "ended " (st.end_ms.map(gmt).unwrap_or_default()) } } }
                tr { th { "Executors alive" } td.n { (alive) " of " (st.executors.len()) } }
                tr { th { "Jobs" } td.n { (st.jobs.len() as u64 + st.forgotten.succeeded + st.forgotten.failed) " (" (running) " running)" } }
                tr { th { "Training runs" } td.n { (st.training.len()) } }
            }
            p {
                @for (tab, name) in layout::TABS {
                    @if tab != "training" || !st.training.is_empty() {
                        a href=(tab) { (name) } " "
                    }
                }
            }
        },
    )
}

/// Executors: first in the navigation.
pub fn executors(st: &AppState) -> Markup {
    app_page(
        st,
        "Executors",
        place(st, "executors", 0),
        html! {
            table {
                tr { th { "Executor" } th { "Address" } th { "Cores" } th { "State" } th { "Tasks done" } th { "Tasks failed" } th { "Task time" } th { "Blocks" } th { "Memory" } th { "Disk" } th { "Shuffle read" } th { "Shuffle write" } th { "Last heartbeat" } }
                @for e in &st.executors {
                    @let (mem, disk, blocks) = st.executor_storage(&e.id);
                    tr {
                        td { (e.id) } td { (e.address) } td.n { (e.cores) }
                        td { span class=(e.state) { (e.state) } @if let Some(r) = &e.remove_reason { " (" (r) ")" } }
                        td.n { (e.completed_tasks) } td.n { (e.failed_tasks) }
                        td.n { (duration_ms(e.task_micros / 1000)) }
                        td.n { (blocks) } td.n { (bytes(mem)) } td.n { (bytes(disk)) }
                        td.n { (bytes(e.shuffle_read_bytes)) } td.n { (bytes(e.shuffle_write_bytes)) }
                        td { @match e.last_heartbeat_ms { Some(t) => { (duration_ms(st.last_event_ms.saturating_sub(t))) " ago" }, None => "—" } }
                    }
                }
            }
        },
    )
}

/// Jobs, newest first.
pub fn jobs(st: &AppState) -> Markup {
    let f = st.forgotten;
    app_page(
        st,
        "Jobs",
        place(st, "jobs", 0),
        html! {
            @if f.succeeded + f.failed > 0 {
                p { "Older jobs not listed: " (f.succeeded) " succeeded, " (f.failed) " failed (the last " (crate::store::RETAINED_JOBS) " are kept)." }
            }
            (job_table(st, st.jobs.values().rev(), ""))
        },
    )
}

fn job_table<'a>(
    st: &AppState,
    jobs: impl Iterator<Item = &'a crate::store::JobData>,
    prefix: &str,
) -> Markup {
    html! {
        table {
            tr { th { "Job" } th { "Description" } th { "Status" } th { "Submitted" } th { "Duration" } th { "Stages" } th { "Tasks (done/total)" } th { "Failed tasks" } }
            @for j in jobs {
                tr {
                    td { a href={ (prefix) "jobs/" (j.id) } { (j.id) } }
                    td { (j.description) }
                    td { span class=(j.status) { (j.status) } }
                    td { (gmt(j.submission_ms)) }
                    td.n { (duration_ms(j.completion_ms.unwrap_or(st.last_event_ms).saturating_sub(j.submission_ms))) }
                    td { @for s in &j.stage_ids { a href={ (prefix) "stages/" (s) } { (s) } " " } }
                    td.n { (j.completed_tasks) "/" (j.num_tasks) }
                    td.n { (j.failed_tasks) }
                }
            }
        }
    }
}

/// One job and its stages.
pub fn job(st: &AppState, id: u64) -> Option<Markup> {
    let j = st.jobs.get(&id)?;
    let stages: Vec<&StageData> = j
        .stage_ids
        .iter()
        .filter_map(|s| st.stages.get(s))
        .collect();
    Some(app_page(
        st,
        &format!("Job {id}"),
        place(st, "jobs", 1),
        html! {
            (job_table(st, std::iter::once(j), "../"))
            @if let Some(e) = &j.error { p.FAILED { (e) } }
            h2 { "Stages" }
            (stage_table(st, stages.into_iter(), "../"))
        },
    ))
}

fn stage_table<'a>(
    st: &AppState,
    stages: impl Iterator<Item = &'a StageData>,
    prefix: &str,
) -> Markup {
    html! {
        table {
            tr { th { "Stage" } th { "Job" } th { "Name" } th { "Status" } th { "Tasks (done/total)" } th { "Failed" } th { "Retried" } th { "Duration" } th { "Task time min / median / max" } th { "Shuffle read" } th { "Shuffle write" } }
            @for s in stages {
                @let (min, med, max) = min_median_max(&s.task_micros);
                tr {
                    td { a href={ (prefix) "stages/" (s.id) } { (s.id) } @if s.attempt > 0 { " (attempt " (s.attempt) ")" } }
                    td { a href={ (prefix) "jobs/" (s.job) } { (s.job) } }
                    td { (s.name) }
                    td { span class=(s.status) { (s.status) } }
                    td.n { (s.completed_tasks) "/" (s.num_tasks) }
                    td.n { (s.failed_tasks) } td.n { (s.retried_tasks) }
                    td.n { (duration_ms(s.completion_ms.unwrap_or(st.last_event_ms).saturating_sub(s.submission_ms))) }
                    td.n { (duration_ms(min / 1000)) " / " (duration_ms(med / 1000)) " / " (duration_ms(max / 1000)) }
                    td.n { (bytes(s.shuffle_read_bytes)) " / " (s.shuffle_read_records) " records" }
                    td.n { (bytes(s.shuffle_write_bytes)) " / " (s.shuffle_write_records) " records" }
                }
            }
        }
    }
}

/// Stages, newest first.
pub fn stages(st: &AppState) -> Markup {
    app_page(
        st,
        "Stages",
        place(st, "stages", 0),
        html! { (stage_table(st, st.stages.values().rev(), "")) },
    )
}

/// One stage.
pub fn stage(st: &AppState, id: u64) -> Option<Markup> {
    let s = st.stages.get(&id)?;
    Some(app_page(
        st,
        &format!("Stage {id}"),
        place(st, "stages", 1),
        html! {
            (stage_table(st, std::iter::once(s), "../"))
            table {
                tr { th { "Kind" } td { @if s.shuffle_map { "shuffle map" } @else { "result" } } }
                tr { th { "Executor run time" } td.n { (duration_ms(s.run_micros / 1000)) } }
                tr { th { "Submitted" } td { (gmt(s.submission_ms)) } }
            }
            @if let Some(f) = &s.failure { p.FAILED { (f) } }
        },
    ))
}

/// Cached RDDs.
pub fn storage(st: &AppState) -> Markup {
    app_page(
        st,
        "Storage",
        place(st, "storage", 0),
        html! {
            @if st.rdds.is_empty() { p { "No RDD is cached." } }
            table {
                tr { th { "RDD" } th { "Name" } th { "Storage level" } th { "Partitions cached" } th { "Memory" } th { "Disk" } }
                @for r in st.rdds.values() {
                    @let (cached, mem, disk) = st.rdd_storage(r.id);
                    tr {
                        td { (r.id) } td { (r.name) } td { (r.level) }
                        td.n { (cached) " / " (r.num_partitions) }
                        td.n { (bytes(mem)) } td.n { (bytes(disk)) }
                    }
                }
            }
        },
    )
}

/// What the application was started with.
pub fn environment(st: &AppState) -> Markup {
    app_page(
        st,
        "Environment",
        place(st, "environment", 0),
        html! {
            table {
                tr { th { "Application" } td { (st.name) } }
                tr { th { "Master" } td { (st.master) } }
                @for (k, v) in &st.environment { tr { th { (k) } td { (v) } } }
            }
        },
    )
}

/// A page for something that is not there; `home` is the relative path to the UI's home.
pub fn not_found(what: &str, home: &str) -> Markup {
    html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Not found · discnn" } }
            body { h1 { "Not found" } p { (what) } p { a href={ (home) "./" } { "All applications" } } }
        }
    }
}
