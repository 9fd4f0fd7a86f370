//! countdown's benchmarks: the real bot binary against the fake
//! Discord (in this process) and a fresh PostgreSQL database per scenario.
//!
//! ```sh
//! cargo run --release -p bench              # everything, ~6 minutes
//! cargo run -p bench -- --quick             # small sizes, no thresholds (CI smoke)
//! cargo run --release -p bench -- --only 3,4 --markdown /tmp/results.md
//! ```
//!
//! It builds the bot binary of its own profile first (`target/release/
//! countdown` for a release run), or uses `COUNTDOWN_BIN`. PostgreSQL:
//! `BENCH_DATABASE_URL` (else `TEST_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`), where each scenario
//! creates and drops a database of its own.

mod harness;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};
use fake_discord::BucketModel;

use report::Report;
use scenarios::Ctx;

const USAGE: &str = "usage: bench [--quick] [--only 1,2,...] [--markdown FILE] [--no-build]

  --quick          small sizes, no thresholds checked (CI smoke run, < 1 min)
  --only LIST      run only these scenarios (1 drift, 2 normal load, 3 over budget,
                   4 scale, 5 resume, 6 cold start, 7 burst)
  --markdown FILE  also write the machine and the table as Markdown to FILE
  --no-build       do not build the bot binary first
  --fixed-windows  the fake's channel buckets as fixed windows opening at their first
                   request (Discord before 2022) instead of leaky buckets (Discord now)
  --strict-global  scenario 2's fake refuses the 51st request in any rolling second
                   (the strictest reading of the global limit), and counts its 429s";

struct Args {
    quick: bool,
    only: Vec<u32>,
    markdown: Option<PathBuf>,
    build: bool,
    channel_model: BucketModel,
    strict_global: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        quick: false,
        only: (1..=7).collect(),
        markdown: None,
        build: true,
        channel_model: BucketModel::default(),
        strict_global: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--no-build" => args.build = false,
            "--fixed-windows" => args.channel_model = BucketModel::FixedWindow,
            "--strict-global" => args.strict_global = true,
            "--only" => {
                let list = it.next().context("--only needs a list, e.g. 1,3")?;
                args.only = list
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--only {list}: not a list of numbers"))?;
            }
            "--markdown" => {
                args.markdown = Some(it.next().context("--markdown needs a file")?.into())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(args)
}

/// This run's arguments as ` -- …` (without `--markdown FILE` and
/// `--no-build`, which change nothing measured), for the report.
fn command_args() -> String {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--markdown" => {
                it.next();
            }
            "--no-build" => {}
            _ => out.push(a),
        }
    }
    if out.is_empty() {
        String::new()
    } else {
        format!(" -- {}", out.join(" "))
    }
}

/// The bot binary of this build's profile, built first unless `--no-build`.
fn bot_binary(build: bool) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("COUNTDOWN_BIN") {
        return Ok(bin.into());
    }
    let release = !cfg!(debug_assertions);
    if build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "countdown", "--bin", "countdown"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if release {
            cmd.arg("--release");
        }
        eprintln!(
            "building the bot ({})…",
            if release { "release" } else { "debug" }
        );
        let status = cmd.status().context("cannot run cargo")?;
        if !status.success() {
            bail!("building the bot failed");
        }
    }
    // target/<profile>/bench → target/<profile>/countdown
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .context("no directory of the bench binary")?
        .join("countdown");
    if !bin.exists() {
        bail!(
            "{} does not exist (build it, or set COUNTDOWN_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The same allocator as the bot's, so the fake in this process is not
/// slowed by glibc's `malloc` more than the bot is.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let bin = bot_binary(args.build)?;
    let machine = report::machine();
    eprintln!("{machine}");
    if cfg!(debug_assertions) && !args.quick {
        eprintln!("warning: a debug build; the figures are for `cargo run --release -p bench`");
    }
    let mut ctx = Ctx {
        bin: bin.clone(),
        quick: args.quick,
        report: Report::default(),
        channel_model: args.channel_model,
        strict_global: args.strict_global,
    };
    let started = Instant::now();
    let mut failed = 0;
    for n in &args.only {
        let t = Instant::now();
        eprintln!("scenario {n}…");
        let outcome = match n {
            1 => scenarios::drift(&mut ctx).await,
            2 => scenarios::lateness(&mut ctx).await,
            3 => scenarios::over_budget(&mut ctx).await,
            4 => scenarios::scale(&mut ctx).await,
            5 => scenarios::resume(&mut ctx).await,
            6 => scenarios::cold_start(&mut ctx).await,
            7 => scenarios::burst(&mut ctx).await,
            other => Err(anyhow::anyhow!("there is no scenario {other}")),
        };
        if let Err(e) = outcome {
            failed += 1;
            eprintln!("scenario {n} failed: {e:#}");
            ctx.report.push(
                &format!("{n}"),
                "ERROR",
                format!("{e:#}").replace('\n', " "),
                "",
                Some(false),
            );
        }
        eprintln!("scenario {n}: {:.0} s", t.elapsed().as_secs_f64());
    }
    let mode = format!(
        "{}; the fake's channel buckets: {}{}",
        if args.quick {
            "quick (small sizes, no thresholds)"
        } else {
            "full"
        },
        match args.channel_model {
            BucketModel::Leaky => "leaky (Discord since 2022)",
            BucketModel::FixedWindow => "fixed windows (Discord before 2022)",
        },
        if args.strict_global {
            "; scenario 2 refuses the 51st request of any rolling second"
        } else {
            ""
        }
    );
    let bot_mode = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "\ncountdown benchmarks, {mode}; bot {} ({bot_mode}); {:.0} s\n",
        bin.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", ctx.report.table());
    let missed = ctx.report.missed() - failed;
    if !args.quick {
        println!("goals missed: {missed}");
    }
    if let Some(path) = &args.markdown {
        let text = format!(
            "Command: `cargo run {}-p bench{}`\n\n```\n{machine}load average at the end: {}\n```\n\nmode: {mode}, bot build: {bot_mode}, total {:.0} s\n\n{}",
            if cfg!(debug_assertions) { "" } else { "--release " },
            command_args(),
            report::load_average(),
            started.elapsed().as_secs_f64(),
            ctx.report.markdown()
        );
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if failed > 0 {
        eprintln!("{failed} scenario(s) failed");
        std::process::exit(1);
    }
    Ok(())
}
