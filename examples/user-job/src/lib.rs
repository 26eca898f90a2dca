//! A job of one's own: the sum of squares of 1..=N, and how many of the squares end in each
//! digit — computed on the executors with an op this crate defines, through a shuffle.

use discnn::{Job, JobIo};
use discnn_engine::{register_op, Context, MapFn, ReduceFn};
use serde::{Deserialize, Serialize};

/// `n` → `(last digit of n², n²)`: the op the executors must carry.
#[derive(Clone, Serialize, Deserialize)]
pub struct SquareByDigit;

impl MapFn for SquareByDigit {
    type In = i64;
    type Out = (i64, i64);
    fn call(&self, n: i64) -> (i64, i64) {
        let sq = n * n;
        (sq % 10, sq)
    }
}
register_op!(map SquareByDigit);

/// Adds the squares of one digit.
#[derive(Clone, Serialize, Deserialize)]
pub struct Add;

impl ReduceFn for Add {
    type Value = i64;
    fn call(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}
register_op!(reduce Add);

/// `my-driver submit squares --n N`'s arguments.
#[derive(clap::Args, Serialize, Deserialize)]
pub struct SquaresArgs {
    /// Sum the squares of 1..=N.
    #[arg(long)]
    pub n: i64,
    /// Partitions of 1..=N.
    #[arg(long, default_value_t = 4)]
    pub partitions: usize,
}

/// The job: prints `digit<TAB>sum of the squares ending in it`, then `total<TAB>sum`.
pub struct Squares;

impl Job for Squares {
    type Args = SquaresArgs;
    const NAME: &'static str = "squares";
    const ABOUT: &'static str = "Sum the squares of 1..=N on the executors, by last digit";

    fn run(ctx: &Context, args: &SquaresArgs, io: &mut JobIo<'_>) -> anyhow::Result<()> {
        let numbers = ctx.range(1, args.n + 1, 1, args.partitions)?;
        let mut by_digit = numbers
            .map(SquareByDigit)
            .reduce_by_key(Add, args.partitions)
            .collect()?;
        by_digit.sort();
        let total: i64 = by_digit.iter().map(|(_, s)| s).sum();
        if io.json {
            (io.out)(serde_json::json!({ "by_digit": by_digit, "total": total }).to_string());
        } else {
            for (digit, sum) in &by_digit {
                (io.out)(format!("{digit}\t{sum}"));
            }
            (io.out)(format!("total\t{total}"));
        }
        Ok(())
    }
}
discnn::register_job!(Squares);

/// Called by both binaries so the linker keeps this crate, and with it the op and job
/// registrations above (they are link-time table entries that nothing else references).
pub fn link() {}
