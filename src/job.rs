//! Jobs as a registry, like ops. A job is a type implementing [`Job`] — a name, clap arguments
//! and a `run` on a [`Context`] — put in a link-time table with [`register_job!`]. `driver
//! submit NAME …` finds it there, whether it is built in (wordcount, the cnn jobs) or a user's
//! crate linked into the same binaries; `driver serve` runs the same table, so a job submitted
//! to a cluster travels as its name and its arguments as JSON ([`JobSpec`]).

use clap::{ArgMatches, FromArgMatches};
use discnn_engine::cluster::{JobOutcome, JobOutput, JobRunner};
use discnn_engine::Context;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a job's output goes: `out` takes its stdout lines, `log` its progress lines (stderr).
pub struct JobIo<'a> {
    /// Print exactly one JSON object on `out` (`--json`).
    pub json: bool,
    /// One line of the job's output.
    pub out: &'a mut dyn FnMut(String),
    /// One line of progress.
    pub log: &'a mut dyn FnMut(String),
}

/// A job `driver submit` runs.
///
/// ```ignore
/// #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// struct CountArgs { #[arg(long)] n: i64 }
/// struct Count;
/// impl discnn::Job for Count {
///     type Args = CountArgs;
///     const NAME: &'static str = "count";
///     const ABOUT: &'static str = "Count to N on the executors";
///     fn run(ctx: &Context, args: &CountArgs, io: &mut JobIo<'_>) -> anyhow::Result<()> {
///         (io.out)(ctx.range(0, args.n, 1, 4)?.count()?.to_string());
///         Ok(())
///     }
/// }
/// discnn::register_job!(Count);
/// ```
pub trait Job: 'static {
    /// The job's arguments: clap parses them on the command line, serde carries them to a
    /// `driver serve`.
    type Args: clap::Args + Serialize + DeserializeOwned;
    /// Its name after `driver submit`.
    const NAME: &'static str;
    /// One line for `driver submit --help`.
    const ABOUT: &'static str;
    /// Makes the paths in `args` absolute against the submitting client's directory: a
    /// cluster's driver and executors run elsewhere. A job without paths keeps the default.
    fn absolutize(_args: &mut Self::Args, _cwd: &Path) {}
    /// Runs the job on `ctx` (local, local-cluster, or a cluster's driver).
    fn run(ctx: &Context, args: &Self::Args, io: &mut JobIo<'_>) -> anyhow::Result<()>;
}

/// A [`Job`] in the link-time table; what [`register_job!`] expands to.
#[doc(hidden)]
pub struct JobRegistration {
    pub name: &'static str,
    command: fn() -> clap::Command,
    parse: fn(&ArgMatches) -> Result<serde_json::Value, clap::Error>,
    absolutize: fn(serde_json::Value, &Path) -> anyhow::Result<serde_json::Value>,
    run: fn(&Context, serde_json::Value, &mut JobIo<'_>) -> anyhow::Result<()>,
}

inventory::collect!(JobRegistration);

fn command<J: Job>() -> clap::Command {
    // After the arguments: an `Args` struct's doc comment would otherwise be the about.
    <J::Args as clap::Args>::augment_args(clap::Command::new(J::NAME))
        .about(J::ABOUT)
        .long_about(None)
}

fn parse<J: Job>(m: &ArgMatches) -> Result<serde_json::Value, clap::Error> {
    let args = J::Args::from_arg_matches(m)?;
    serde_json::to_value(&args).map_err(|e| {
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("{}: arguments not encodable: {e}", J::NAME),
        )
    })
}

fn decode<J: Job>(args: serde_json::Value) -> anyhow::Result<J::Args> {
    serde_json::from_value(args)
        .map_err(|e| crate::cli::UsageError(format!("bad arguments for {}: {e}", J::NAME)).into())
}

fn absolutize<J: Job>(args: serde_json::Value, cwd: &Path) -> anyhow::Result<serde_json::Value> {
    let mut args = decode::<J>(args)?;
    J::absolutize(&mut args, cwd);
    Ok(serde_json::to_value(&args)?)
}

fn run<J: Job>(ctx: &Context, args: serde_json::Value, io: &mut JobIo<'_>) -> anyhow::Result<()> {
    J::run(ctx, &decode::<J>(args)?, io)
}

impl JobRegistration {
    /// The table entry of `J`.
    pub const fn of<J: Job>() -> Self {
        JobRegistration {
            name: J::NAME,
            command: command::<J>,
            parse: parse::<J>,
            absolutize: absolutize::<J>,
            run: run::<J>,
        }
    }
}

/// Puts a [`Job`] in the table `driver submit` and `driver serve` read. Write it once, next to
/// the type, at module level, in a crate the `driver` binary links.
#[macro_export]
macro_rules! register_job {
    ($ty:ty) => {
        $crate::__private::inventory::submit! {
            $crate::job::JobRegistration::of::<$ty>()
        }
    };
}

/// Every registered job, by name.
pub fn registered() -> Vec<&'static JobRegistration> {
    let mut v: Vec<_> = inventory::iter::<JobRegistration>.into_iter().collect();
    v.sort_by_key(|r| r.name);
    v.dedup_by_key(|r| r.name);
    v
}

/// The names of the registered jobs, for messages.
pub fn names() -> String {
    registered()
        .iter()
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn find(name: &str) -> Option<&'static JobRegistration> {
    registered().into_iter().find(|r| r.name == name)
}

/// Job `name`'s entry, or a usage error that lists the jobs there are.
fn registration(name: &str) -> anyhow::Result<&'static JobRegistration> {
    find(name).ok_or_else(|| unknown(name))
}

/// The registered jobs as clap subcommands (of `driver submit`).
pub fn commands() -> Vec<clap::Command> {
    registered().iter().map(|r| (r.command)()).collect()
}

/// A job to run: its name, its arguments as JSON, and how its result is printed. What a client
/// sends to `driver serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// The job's name.
    pub job: String,
    /// Its arguments, paths absolute.
    pub args: serde_json::Value,
    /// Print exactly one JSON object on stdout.
    pub json: bool,
}

impl JobSpec {
    /// The spec of job `name` as clap parsed it (`m`: the job subcommand's matches).
    pub fn from_matches(name: &str, m: &ArgMatches, json: bool) -> anyhow::Result<Self> {
        let r = registration(name)?;
        Ok(JobSpec {
            job: name.to_string(),
            args: (r.parse)(m)?,
            json,
        })
    }

    /// The spec of `J` with `args` (for tests and programs that submit without a command line).
    pub fn of<J: Job>(args: J::Args, json: bool) -> anyhow::Result<Self> {
        Ok(JobSpec {
            job: J::NAME.to_string(),
            args: serde_json::to_value(&args)?,
            json,
        })
    }

    /// Executors read and write paths themselves, from their own working directories: a
    /// client resolves relative paths against its own before submitting. (A local run keeps
    /// them as typed: they are recorded in the run's outputs.)
    pub fn absolutize(mut self, cwd: &Path) -> anyhow::Result<Self> {
        let r = registration(&self.job)?;
        self.args = (r.absolutize)(self.args, cwd)?;
        Ok(self)
    }

    /// Runs the job on `ctx`; each stdout line goes to `out`, progress lines to `log`.
    pub fn run(
        &self,
        ctx: &Context,
        out: &mut dyn FnMut(String),
        log: &mut dyn FnMut(String),
    ) -> anyhow::Result<()> {
        let r = registration(&self.job)?;
        ctx.set_environment(self.environment(ctx));
        let mut io = JobIo {
            json: self.json,
            out,
            log,
        };
        (r.run)(ctx, self.args.clone(), &mut io)
    }

    /// What the UI's Environment page shows: the job, its arguments, the master and the build
    /// (the submission's secret and TLS files are not job arguments, so never among them).
    fn environment(&self, ctx: &Context) -> std::collections::BTreeMap<String, String> {
        let mut env = std::collections::BTreeMap::new();
        env.insert("discnn.job".into(), self.job.clone());
        env.insert("discnn.master".into(), ctx.config().master.clone());
        env.insert("discnn.build".into(), crate::cli::version().to_string());
        if let serde_json::Value::Object(args) = &self.args {
            for (k, v) in args {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                env.insert(format!("job.{k}"), text);
            }
        }
        env
    }
}

fn unknown(name: &str) -> anyhow::Error {
    crate::cli::UsageError(format!(
        "no job named `{name}` in this build; it knows: {}",
        names()
    ))
    .into()
}

/// Makes `p` absolute against `cwd` (an `s3://` URL stays as it is; `file://` is taken off).
pub fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    let p = match p.to_str().and_then(|s| s.strip_prefix("file://")) {
        Some(local) => Path::new(local),
        None => p,
    };
    if p.is_absolute() || discnn_engine::objects::is_object_url(p) {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// The table as `driver serve` runs it.
pub struct Catalog;

impl JobRunner for Catalog {
    fn name(&self, job_json: &str) -> Result<String, String> {
        let spec = serde_json::from_str::<JobSpec>(job_json)
            .map_err(|e| format!("not a job this driver knows: {e}"))?;
        registration(&spec.job)
            .map(|r| r.name.to_string())
            .map_err(|e| e.to_string())
    }

    fn run(&self, ctx: &Context, job_json: &str, out: &JobOutput) -> JobOutcome {
        let result = serde_json::from_str::<JobSpec>(job_json)
            .map_err(|e| anyhow::Error::new(crate::cli::UsageError(format!("bad job: {e}"))))
            .and_then(|spec| {
                spec.run(ctx, &mut |line| out.println(line), &mut |line| {
                    out.log(line)
                })
            });
        match result {
            Ok(()) => JobOutcome {
                exit_code: 0,
                error: None,
            },
            Err(e) => JobOutcome {
                exit_code: crate::cli::exit_code_number(&e),
                error: Some(format!("{e:#}")),
            },
        }
    }
}
