//! The first job: count words and write `word<TAB>count` lines sorted by count descending, then
//! word ascending (code-point order), so the part files concatenated in name order are the
//! global order.

use discnn_engine::{
    register_op, Context, FlatMapBorrowedFn, MapBorrowedFn, MapFn, ReduceFn, Result,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

// The two ops before the shuffle are borrowed-record ops: each line is lent from the reader's
// buffer, each word is a slice of it, and the map-side combiner copies a word only the first
// time its partition sees it.

/// Splits on Unicode White_Space (`char::is_whitespace`: NBSP, U+2009 and U+3000 included).
#[derive(Clone, Serialize, Deserialize)]
pub struct SplitWords;
impl FlatMapBorrowedFn for SplitWords {
    type In = String;
    type Out = String;
    fn call<'a>(&self, line: &'a str, emit: &mut dyn FnMut(&'a str)) {
        line.split_whitespace().for_each(emit);
    }
}
register_op!(flat_map_borrowed SplitWords);

#[derive(Clone, Serialize, Deserialize)]
pub struct PairWithOne;
impl MapBorrowedFn for PairWithOne {
    type In = String;
    type Out = (String, u64);
    fn call<'a>(&self, w: &'a str) -> (&'a str, u64)
    where
        Self: 'a,
    {
        (w, 1)
    }
}
register_op!(map_borrowed PairWithOne);

#[derive(Clone, Serialize, Deserialize)]
pub struct AddCounts;
impl ReduceFn for AddCounts {
    type Value = u64;
    fn call(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}
register_op!(reduce AddCounts);

/// Ascending order of `(u64::MAX - count, word)` is count descending, then word ascending.
#[derive(Clone, Serialize, Deserialize)]
pub struct ByCountThenWord;
impl MapFn for ByCountThenWord {
    type In = (String, u64);
    type Out = (u64, String);
    fn call(&self, (w, c): (String, u64)) -> (u64, String) {
        (u64::MAX - c, w)
    }
}
register_op!(map ByCountThenWord);

#[derive(Clone, Serialize, Deserialize)]
pub struct FormatLine;
impl MapFn for FormatLine {
    type In = (String, u64);
    type Out = String;
    fn call(&self, (w, c): (String, u64)) -> String {
        format!("{w}\t{c}")
    }
}
register_op!(map FormatLine);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WordCountSummary {
    pub distinct_words: u64,
    pub partitions: usize,
}

/// Runs wordcount from `input` (a file or a directory) into the new directory `output`.
pub fn run(ctx: &Context, input: &Path, output: &Path) -> Result<WordCountSummary> {
    if output.exists() {
        return Err(discnn_engine::EngineError::OutputExists(
            output.to_path_buf(),
        ));
    }
    let parts = ctx.default_parallelism().max(1);
    let counts = ctx
        .text_file(input, parts)?
        .flat_map_borrowed(SplitWords)
        .map_borrowed(PairWithOne)
        .reduce_by_key(AddCounts, parts);
    counts.cache();
    let sorted = counts.sort_by(ByCountThenWord, true, parts)?;
    sorted.map(FormatLine).save_as_text_file(output)?;
    let distinct_words = counts.count()?;
    Ok(WordCountSummary {
        distinct_words,
        partitions: sorted.num_partitions(),
    })
}
